"""The command line an operator or a CI job meets (issue 14, items 14 and 17)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from kaizenctl.cli import COMMANDS, main
from kaizenctl.commands.common import use_color
from kaizenctl.server.testing import RunningServer, running_server
from tests.paths import EXAMPLES, SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
ERROR_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((SCHEMAS / "output" / "error.v1.json").read_text())
)


@pytest.fixture
def env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("KAIZEN_API_URL", server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", server.password)
    monkeypatch.delenv("KAIZEN_TOKEN", raising=False)
    return server


def _only_json_document(out: str) -> dict[str, object]:
    [line] = out.splitlines()
    document: dict[str, object] = json.loads(line)
    ERROR_SCHEMA.validate(document)
    return document


# ---- item 14: --format json reports errors as JSON on stdout -------------------------------


def test_item14_a_validation_failure_is_a_json_error_on_stdout(
    env: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "agent.yaml"
    broken.write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: a}\n"
        "spec: {system_prompt: x, provider: openai, model: m, temprature: 0.3}\n"
    )

    assert main(["plan", "--format", "json", str(broken)]) == 1

    captured = capsys.readouterr()
    document = _only_json_document(captured.out)
    error = document["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "manifest"
    problems = error["problems"]
    assert any(f"{broken}:4:" in problem and "temprature" in problem for problem in problems)
    assert "temprature" in captured.err  # people still read stderr


def test_item14_a_connection_failure_is_a_json_error_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KAIZEN_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KAIZEN_EMAIL", "dev@kaizen.local")
    monkeypatch.setenv("KAIZEN_PASSWORD", "not-printed-anywhere")
    monkeypatch.delenv("KAIZEN_TOKEN", raising=False)
    # The contract's first request is the login (with auto it would be the dialect probe).
    monkeypatch.setenv("KAIZEN_DIALECT", "contract")

    assert main(["plan", "--detailed-exitcode", "--format=json", str(EXAMPLES)]) == 1

    out = capsys.readouterr().out
    error = _only_json_document(out)["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "connection"
    assert "/auth/login" in str(error["message"])
    assert "not-printed-anywhere" not in out


def test_item14_a_usage_error_of_apply_is_a_json_error_on_stdout(
    env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "--format", "json", "--target", "Nope/x", str(EXAMPLES)]) == 1

    error = _only_json_document(capsys.readouterr().out)["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "usage"


# ---- item 17: environment in --help, NO_COLOR, --no-color, -v everywhere, Ctrl-C ----------


def _environment_variables_read() -> set[str]:
    """Every KAIZEN_* / NO_COLOR name the source spells out as a string."""
    names: set[str] = set()
    for path in (ROOT / "kaizenctl").rglob("*.py"):
        if "server" in path.parts and path.name != "testing.py":
            continue  # the server itself reads no environment; `serve` does, in commands/
        names |= set(re.findall(r"[\"'](KAIZEN_[A-Z_]+|NO_COLOR)[\"']", path.read_text()))
    return names


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["apply", "--help"]])
def test_item17_help_lists_every_environment_variable_read(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    names = _environment_variables_read()
    assert {"KAIZEN_API_URL", "KAIZEN_TOKEN", "KAIZEN_PASSWORD", "NO_COLOR"} <= names

    assert main(argv) == 0

    out = capsys.readouterr().out
    for name in sorted(names):
        assert name in out, name
    assert "${VAR}" in out


class _Terminal:
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("no_color_env", "flag", "colour"),
    [(None, False, True), ("", False, True), ("1", False, False), (None, True, False)],
)
def test_item17_only_a_non_empty_no_color_or_the_flag_turns_colour_off(
    monkeypatch: pytest.MonkeyPatch, no_color_env: str | None, flag: bool, colour: bool
) -> None:
    if no_color_env is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color_env)

    assert use_color(_Terminal(), no_color=flag) is colour


def test_item17_plan_no_color_drops_colour_on_a_terminal(
    env: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)

    assert main(["plan", str(EXAMPLES)]) == 0
    assert "\x1b[" in capsys.readouterr().out
    assert main(["plan", "--no-color", str(EXAMPLES)]) == 0
    assert "\x1b[" not in capsys.readouterr().out


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("flag", ["-v", "-vv", "--verbose"])
def test_item17_every_command_accepts_v_and_vv(
    command: str, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, flag, "--help"]) == 0, capsys.readouterr().err


def test_item17_validate_v_lists_what_it_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-v", str(EXAMPLES)]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^Agent/triage   \(.*agents/triage\.yaml:1\)$", out, re.MULTILINE)
    assert out.rstrip().endswith("resources OK")


@pytest.mark.timeout(60)
def test_item17_ctrl_c_during_plan_exits_130() -> None:
    with running_server(latency_ms=2000) as server:
        env = dict(
            os.environ,
            KAIZEN_API_URL=server.url,
            KAIZEN_EMAIL=server.email,
            KAIZEN_PASSWORD=server.password,
        )
        plan = subprocess.Popen(
            [sys.executable, "-m", "kaizenctl", "plan", str(EXAMPLES)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        # Interrupt once the plan is waiting on the server (the login is slowed down).
        while not server.request_log() and time.monotonic() < deadline:
            time.sleep(0.02)
        plan.send_signal(signal.SIGINT)
        _, err = plan.communicate(timeout=30)

    assert plan.returncode == 130, err
    assert "Interrupted." in err
    assert "Aborted." not in err
