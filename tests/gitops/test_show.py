"""`kaizenctl show PLANFILE`: one saved plan renders as the PR comment, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaizenctl.api.service import KaizenApi
from kaizenctl.cli import main
from tests.gitops.conftest import CliRun, GitOps

SECRET = "sk-live-show-5e1d"


def _rendered(plan_output: str) -> str:
    """What `plan --out` printed of the plan itself, without its closing apply hint."""
    hint = plan_output.find("\nSaved the plan to ")
    return plan_output if hint < 0 else plan_output[:hint]


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> CliRun:
    capsys.readouterr()
    code = main(["show", *args])
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


@pytest.fixture
def drifted(gitops: GitOps, examples: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples applied, then changed in Git (a field, a graph, a secret) and by hand."""
    assert gitops.cli("apply", str(examples), "--auto-approve").code == 0
    triage = examples / "agents" / "triage.yaml"
    triage.write_text(triage.read_text().replace("temperature: 0.1", "temperature: 0.5"))
    pipeline = examples / "pipelines" / "support.yaml"
    text = pipeline.read_text()
    assert "{from: lead, to: refunds}" in text
    pipeline.write_text(
        text.replace("{from: lead, to: refunds}", "{from: lead, to: refunds, source_handle: esc}")
    )
    monkeypatch.setenv("SHOW_KEY", SECRET)
    (examples / "agents" / "keyed.yaml").write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: keyed}\nspec:\n"
        '  system_prompt: "Use ${SHOW_KEY}."\n  provider: openai\n  model: gpt-4o-mini\n'
    )

    async def by_hand(api: KaizenApi) -> None:
        await api.policies.create(
            {"name": "by-hand", "effect": "deny", "resource_type": "agent", "actions": ["x"]}
        )

    gitops.with_api(by_hand)
    return examples


@pytest.mark.parametrize("output_format", ["text", "json", "markdown"])
def test_show_renders_a_saved_plan_exactly_as_plan_printed_it(
    gitops: GitOps,
    drifted: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    output_format: str,
) -> None:
    plan_file = tmp_path / "plan.json"
    planned = gitops.cli("plan", str(drifted), "--out", str(plan_file), "--format", output_format)
    assert planned.code == 0, planned.err
    assert "by-hand" in planned.out  # unmanaged, listed

    gitops.server.clear_request_log()
    # No server and no credentials are needed to show a plan.
    for name in ("KAIZEN_EMAIL", "KAIZEN_PASSWORD", "SHOW_KEY"):
        monkeypatch.delenv(name)
    shown = _show(capsys, str(plan_file), "--format", output_format)

    assert shown.code == 0, shown.err
    assert shown.out == _rendered(planned.out)
    assert SECRET not in shown.out
    assert gitops.server.request_log() == []
    if output_format == "json":
        summary = json.loads(shown.out)["summary"]
        assert (summary["update"], summary["replace-graph"], summary["create"]) == (1, 1, 1)
    if output_format == "markdown":
        assert "```mermaid" in shown.out


def test_show_defaults_to_text(
    gitops: GitOps, drifted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file = tmp_path / "plan.json"
    planned = gitops.cli("plan", str(drifted), "--out", str(plan_file))
    assert "kaizenctl apply --plan" in planned.out
    assert _show(capsys, str(plan_file)).out == _rendered(planned.out)
    verbose = _show(capsys, "-v", str(plan_file))
    assert verbose.out == _rendered(planned.out)
    assert f"for {gitops.server.url} (organization " in verbose.err
    assert "Plan: 1 to create, 1 to update, 1 graph(s) to replace" in planned.out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{not json", "not a saved plan (invalid JSON"),
        ('{"type": "plan", "format_version": 1}', "not a saved plan (write one with `plan --out`)"),
    ],
)
def test_show_refuses_what_is_not_a_saved_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    result = _show(capsys, str(path))
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(f"Error: {path}: ")
    assert message in result.err
