"""Where the repository's own files are, for tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The example manifests the README's quick start applies.
EXAMPLES = ROOT / "examples" / "manifests"
