"""Where the repository's own files are, for tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The example manifests the README's quick start applies (shipped in the wheel for `demo`).
EXAMPLES = ROOT / "kaizenctl" / "examples" / "manifests"
# The generated JSON Schemas, also package data (`kaizenctl schema`).
SCHEMAS = ROOT / "kaizenctl" / "schemas"
