"""What an installed kaizenctl offers without a checkout: `schema`, and the server extra."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaizenctl.cli import cli, main
from kaizenctl.kinds import KINDS
from kaizenctl.manifests import schema
from tests.paths import ROOT, SCHEMAS


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ([], "manifest.json"),
        (["Agent"], "agent.json"),
        (["pipeline"], "pipeline.json"),
        (["plan"], "output/plan.v1.json"),
        (["apply-result"], "output/apply-result.v1.json"),
        (["error"], "output/error.v1.json"),
    ],
)
def test_schema_prints_the_packaged_schema(name: list[str], file: str) -> None:
    result = CliRunner().invoke(cli, ["schema", *name])
    assert result.exit_code == 0, result.output
    assert result.output == (SCHEMAS / file).read_text()
    assert json.loads(result.output)["$schema"].startswith("https://json-schema.org/")


def test_the_packaged_manifest_schemas_are_the_generated_ones() -> None:
    packaged = schema.packaged_schemas()
    for name, text in schema.generated_files().items():
        assert packaged[name] == text


def test_schema_out_writes_every_schema_for_an_editor(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["schema", "--out", str(tmp_path / "schemas")])
    assert result.exit_code == 0, result.output
    written = sorted(
        str(p.relative_to(tmp_path / "schemas")) for p in (tmp_path / "schemas").rglob("*.json")
    )
    assert written == sorted(schema.packaged_schemas())
    assert "output/plan.v1.json" in written
    assert "manifest.json" in written


def test_an_unknown_schema_name_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "Agnet"]) == 1
    err = capsys.readouterr().err
    assert "no schema 'Agnet'" in err
    assert f"manifest, {', '.join(KINDS)}, plan, apply-result, error" in err


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_server_commands_say_how_to_install_the_server_extra(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes `import uvicorn` fail, as in a client-only install.
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main([command]) == 1
    err = capsys.readouterr().err
    assert f"`kaizenctl {command}` runs the reference server" in err
    assert "missing: fastapi, uvicorn" in err
    assert "pip install 'kaizenctl[server]'" in err


def test_the_client_install_does_not_pull_in_the_server() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for server_package in ("fastapi", "uvicorn", "python-multipart", "pyjwt"):
        assert server_package not in core
        assert any(
            d.lower().startswith(server_package) for d in project["optional-dependencies"]["server"]
        )
    assert project["license"] == "MIT"
    # The tests run the reference server: the dev set-up installs the server extra.
    assert '".[server,dev]"' in (ROOT / "dev.py").read_text()


def test_demo_tells_how_to_run_this_kaizenctl_from_another_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kaizenctl.commands import demo

    installed = Path(sys.executable).parent / "kaizenctl"
    assert installed.exists()
    # Not on PATH (as after `python3 dev.py demo`): the path to the installed script.
    monkeypatch.setattr("shutil.which", lambda name: None)
    shown = demo._kaizenctl_command()
    assert shown != "kaizenctl"
    assert Path(shown).resolve() == installed.resolve()
    # On PATH and the same one: the plain name.
    monkeypatch.setattr("shutil.which", lambda name: str(installed))
    assert demo._kaizenctl_command() == "kaizenctl"
