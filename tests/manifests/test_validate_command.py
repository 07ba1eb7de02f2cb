"""`kaizenctl validate` through click: output, exit codes, stdin."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaizenctl.cli import cli

HERE = Path(__file__).parent


def test_valid_manifests_print_the_count_and_exit_0() -> None:
    result = CliRunner().invoke(cli, ["validate", str(HERE / "valid")])
    assert result.exit_code == 0
    assert result.output == "7 resources OK\n"


def test_problems_go_to_stderr_with_a_count_and_exit_1() -> None:
    case = HERE / "broken" / "several-problems-in-one-run.yaml"
    result = CliRunner().invoke(cli, ["validate", str(HERE / "valid"), str(case)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{case}:8:16: Agent/helper: spec.temperature: ")
    assert lines[-1] == "3 problems found"


def test_a_dash_reads_standard_input() -> None:
    text = (HERE / "valid" / "base.yaml").read_text()
    result = CliRunner().invoke(cli, ["validate", "-"], input=text)
    assert result.exit_code == 0
    assert result.output == "7 resources OK\n"


def test_without_a_path_the_manifests_folder_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = CliRunner().invoke(cli, ["validate"])
    assert missing.exit_code == 1
    assert "no PATH given and there is no ./manifests folder here" in str(missing.exception)

    (tmp_path / "manifests").mkdir()
    shutil.copy(HERE / "valid" / "base.yaml", tmp_path / "manifests" / "base.yaml")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.output == "7 resources OK\n"
