"""The wheel, built from the source tree and installed in a clean virtualenv, works alone.

`pip install kaizenctl` gives the client only (no FastAPI or uvicorn), with the JSON
Schemas and the examples inside; `kaizenctl[server]` adds what `serve` and `demo` need,
and `demo` then runs from the installed package, away from any checkout.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kaizenctl.manifests import schema
from tests.paths import EXAMPLES, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# What a checkout holds that a build must not depend on or copy.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _run(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Run away from the checkout, so nothing is imported from it by accident.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    out = work / "dist"
    # --no-deps: only kaizenctl is built; the build backend comes through pip's cache.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source, cwd=work)
    (built,) = out.glob("kaizenctl-*.whl")
    return built


def test_the_wheel_carries_schemas_examples_license_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_string(archive.read(metadata_name).decode())
    for name in [*schema.generated_files(), *schema.OUTPUT_SCHEMAS.values()]:
        assert f"kaizenctl/schemas/{name}" in names
    for example in EXAMPLES.rglob("*.yaml"):
        assert f"kaizenctl/examples/manifests/{example.relative_to(EXAMPLES)}" in names
    assert "kaizenctl/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)

    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    assert "Typing :: Typed" in metadata.get_all("Classifier", [])
    assert metadata["Summary"]
    requirements = metadata.get_all("Requires-Dist", [])
    unconditional = [r for r in requirements if "extra ==" not in r]
    assert not any(r.lower().startswith(("fastapi", "uvicorn", "pyjwt")) for r in unconditional)
    assert any(r.startswith("fastapi") and 'extra == "server"' in r for r in requirements)


def test_a_clean_install_is_the_client_and_the_server_extra_adds_serve_and_demo(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    kaizenctl = venv / "bin" / "kaizenctl"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    _run(*pip, wheel, cwd=tmp_path)

    # The client alone: no server packages.
    probe = (
        "import importlib.util as u; print([m for m in ('fastapi', 'uvicorn') if u.find_spec(m)])"
    )
    assert _run(python, "-c", probe, cwd=tmp_path).stdout.strip() == "[]"
    assert "show" in _run(kaizenctl, "--help", cwd=tmp_path).stdout
    printed = _run(kaizenctl, "schema", cwd=tmp_path).stdout
    assert printed == schema.generated_files()["manifest.json"]
    examples = _run(
        python,
        "-c",
        "from kaizenctl.commands.demo import DEFAULT_MANIFESTS as d; print(d)",
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(examples).is_relative_to(venv)
    assert "resources OK" in _run(kaizenctl, "validate", examples, cwd=tmp_path).stdout
    for command in ("serve", "demo"):
        refused = _run(kaizenctl, command, cwd=tmp_path, check=False)
        assert refused.returncode == 1
        assert "pip install 'kaizenctl[server]'" in refused.stderr

    # The server extra: `demo` runs the reference server and the packaged examples.
    _run(*pip, f"{wheel}[server]", cwd=tmp_path)
    demo = _run(kaizenctl, "demo", "--deploy-step-s", "0", cwd=tmp_path)
    assert demo.stdout.rstrip().endswith("No changes. Live state matches the manifests.")
