"""The client as users install it, for timing cold starts: ``pip install .`` into its own
virtualenv, without the server or dev extras.

The dev virtualenv is the wrong place to time a cold start: its editable install adds an
import hook to every start-up, and it holds the server and test packages (pytest's pygments,
schemathesis's rich, ...) that a user's install does not. The server still runs from the dev
virtualenv.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENT_VENV = HERE / ".client-venv"
CLIENT_BIN = CLIENT_VENV / "bin"


def _pip(*args: str) -> None:
    command = [str(CLIENT_BIN / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(
        [*command, "--disable-pip-version-check", *args], cwd=ROOT, check=True, stdout=sys.stderr
    )


def client_install() -> Path:
    """The ``bin`` folder of a virtualenv holding this checkout's kaizenctl, as installed
    from its wheel (reinstalled each time, so it is the code being measured)."""
    if not (CLIENT_BIN / "python").exists():
        venv.create(CLIENT_VENV, with_pip=True)
        _pip(".")  # the dependencies, once
    _pip("--no-deps", "--force-reinstall", ".")
    return CLIENT_BIN
