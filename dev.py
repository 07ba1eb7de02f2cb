#!/usr/bin/env python3
"""One entry point for a fresh clone: set up the virtualenv, then run a job.

    python3 dev.py demo   # start the reference server, plan + apply the examples, plan again
    python3 dev.py test   # ruff, mypy strict and the test suite
    python3 dev.py bench  # the benchmarks in benchmarks/

Only the standard library is used here, so it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".kaizenctl-installed"


def _run(*args: str | Path) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def ensure_venv() -> None:
    """Create .venv and install the project with its server and dev extras, once per change."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.create(VENV, with_pip=True)
    print("dev.py: installing kaizenctl and its dev dependencies", flush=True)
    pip = [BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # The server extra too: the tests run the reference server.
    if _run(*pip, "-e", ".[server,dev]") != 0:
        sys.exit("dev.py: pip install failed (see above)")
    STAMP.write_text(wanted)


def main() -> int:
    job = sys.argv[1] if len(sys.argv) > 1 else "test"
    extra = sys.argv[2:]
    ensure_venv()
    if job == "demo":
        return _run(BIN / "kaizenctl", "demo", *extra)
    if job == "test":
        for step in (
            [BIN / "ruff", "check", "kaizenctl", "tests", "benchmarks", "dev.py"],
            [BIN / "mypy", "kaizenctl", "tests", "benchmarks"],
            [BIN / "python", "-m", "pytest", "-q", "-n", "2", *extra],
        ):
            code = _run(*step)
            if code != 0:
                return code
        return 0
    if job == "bench":
        return _run(BIN / "python", "-m", "benchmarks.run", *extra)
    sys.exit(f"dev.py: unknown job {job!r}; use demo, test or bench")


if __name__ == "__main__":
    sys.exit(main())
