"""The plan and apply commands: exit codes, refusals, formats (over real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from kaizenctl.cli import main
from kaizenctl.server.testing import RunningServer
from tests.paths import EXAMPLES


@pytest.fixture
def env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("KAIZEN_API_URL", server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", server.password)
    monkeypatch.delenv("KAIZEN_TOKEN", raising=False)
    return server


def _non_auth_requests(server: RunningServer) -> list[str]:
    return [f"{e.method} {e.path}" for e in server.request_log() if "/auth/" not in e.path]


def test_detailed_exitcode_is_2_with_changes_and_0_without(
    env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--detailed-exitcode", str(EXAMPLES)]) == 2
    assert main(["apply", "--auto-approve", str(EXAMPLES)]) == 0
    capsys.readouterr()

    assert main(["plan", "--detailed-exitcode", str(EXAMPLES)]) == 0
    assert "No changes." in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--detailed-exitcode", "--format", "yaml", str(EXAMPLES)],
        ["plan", "--detailed-exitcode"],
        ["plan", "--detailed-exitcode", "--target", "Nope/x", str(EXAMPLES)],
        ["plan", "--detailed-exitcode", "--parallelism", "0", str(EXAMPLES)],
    ],
)
def test_usage_errors_exit_1_never_2(env: RunningServer, argv: list[str]) -> None:
    assert main(argv) == 1


def test_apply_refuses_to_run_unattended_without_auto_approve(
    env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", str(EXAMPLES)]) == 1

    assert "--auto-approve" in capsys.readouterr().err
    assert _non_auth_requests(env) == []


def test_a_broken_manifest_stops_before_any_request(
    env: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "agent.yaml"
    broken.write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: a}\n"
        "spec: {system_prompt: x, provider: openai, model: m, temprature: 0.3}\n"
    )

    assert main(["apply", "--auto-approve", str(broken)]) == 1

    err = capsys.readouterr().err
    assert f"{broken}:4:" in err
    assert "temprature" in err
    assert "temperature" in err  # did you mean
    assert env.request_log() == []


def test_missing_connection_settings_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("KAIZEN_API_URL", "KAIZEN_TOKEN", "KAIZEN_EMAIL", "KAIZEN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)

    assert main(["plan", str(EXAMPLES)]) == 1

    assert "KAIZEN_API_URL" in capsys.readouterr().err


def test_plan_formats_json_and_markdown(
    env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--format", "json", str(EXAMPLES)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format_version"] == 1
    assert data["summary"]["create"] == 12

    assert main(["plan", "--format", "markdown", str(EXAMPLES)]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("### kaizenctl plan")
    assert markdown.count("```mermaid") == 2


def test_a_failed_apply_exits_1_and_reports_what_happened(
    env: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "all.yaml").write_text(
        (EXAMPLES / "pipelines" / "support.yaml")
        .read_text()
        .replace("max_rounds: 3", "max_rounds: 3\n    simulate_deploy_failure: true")
        + "---\n"
        + (EXAMPLES / "agents" / "specialists.yaml").read_text()
        + "---\n"
        + (EXAMPLES / "deployments" / "support.yaml").read_text()
    )

    assert main(["apply", "--auto-approve", str(folder)]) == 1

    out = capsys.readouterr().out
    assert "Failed (1):" in out
    assert "Skipped (a dependency failed) (2):" in out
    assert "Apply incomplete: 7 done, 1 failed, 2 skipped, 0 never started." in out


def test_apply_json_is_one_document_per_line(
    env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "--auto-approve", "--format", "json", str(EXAMPLES)]) == 0

    plan_line, result_line = capsys.readouterr().out.splitlines()
    assert json.loads(plan_line)["type"] == "plan"
    result = json.loads(result_line)
    assert result["type"] == "apply-result"
    assert result["ok"] is True
    assert len(result["done"]) == 19


def test_prune_on_the_command_line_deletes_what_no_manifest_holds_and_only_with_the_flag(
    env: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "--auto-approve", str(EXAMPLES)]) == 0
    body = {"name": "by-hand", "system_prompt": "p", "provider": "openai", "model": "m"}
    login = httpx.post(
        f"{env.url}/api/v1/auth/login", data={"username": env.email, "password": env.password}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert httpx.post(f"{env.url}/api/v1/agents", json=body, headers=headers).status_code == 201
    capsys.readouterr()

    assert main(["apply", "--auto-approve", str(EXAMPLES)]) == 0
    assert "by-hand" in capsys.readouterr().out  # listed as unmanaged, not deleted
    # Owned by no set: --prune keeps it, only --prune-unmanaged deletes it.
    assert main(["plan", "--prune", "--detailed-exitcode", str(EXAMPLES)]) == 0
    capsys.readouterr()
    env.clear_request_log()
    assert main(["plan", "--prune-unmanaged", "--detailed-exitcode", str(EXAMPLES)]) == 2
    assert "delete Agent/by-hand" in capsys.readouterr().out
    assert main(["apply", "--prune-unmanaged", "--auto-approve", str(EXAMPLES)]) == 0
    # Besides its lock's release (a pipeline record), apply deletes exactly the one agent.
    deletes = [r for r in _non_auth_requests(env) if r.startswith("DELETE /api/v1/agents")]
    assert len(deletes) == 1
    listed = httpx.get(f"{env.url}/api/v1/agents", params={"search": "by-hand"}, headers=headers)
    assert listed.json()["total"] == 0
