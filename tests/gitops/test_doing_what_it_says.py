"""plan and apply do what they say, or refuse saying why (issue 14, items 6-8, 10 and 18).

Over real HTTP against the reference server, through the CLI as CI runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaizenctl.api.service import KaizenApi
from kaizenctl.cli import main
from tests.gitops.conftest import CliRun, GitOps

AGENT = """apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: qa-agent}
spec: {system_prompt: You check answers., provider: openai, model: gpt-4o, temperature: 0.2}
"""
PIPELINE = """apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: qa}
spec:
  pattern: sequential
  nodes:
    - {id: check, node_type: agent, agent: qa-agent}
"""
DEPLOYMENT = """apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: qa-dev}
spec: {pipeline: qa, environment: development}
"""
OTHER = """apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: other}
spec: {system_prompt: Unrelated., provider: openai, model: gpt-4o}
"""


@pytest.fixture
def qa(tmp_path: Path) -> Path:
    folder = tmp_path / "qa"
    folder.mkdir()
    (folder / "agent.yaml").write_text(AGENT)
    (folder / "pipeline.yaml").write_text(PIPELINE)
    (folder / "deployment.yaml").write_text(DEPLOYMENT)
    (folder / "other.yaml").write_text(OTHER)
    return folder


# ---- item 6: --target includes what the target depends on, refuses unknown targets --------


def test_item6_targeting_a_pipeline_includes_its_agents_changes(
    gitops: GitOps, qa: Path
) -> None:
    assert gitops.cli("apply", str(qa), "--auto-approve").code == 0
    agent = qa / "agent.yaml"
    agent.write_text(agent.read_text().replace("temperature: 0.2", "temperature: 0.4"))
    other = qa / "other.yaml"
    other.write_text(other.read_text().replace("Unrelated.", "Still unrelated."))

    planned = gitops.cli("plan", str(qa), "--target", "Pipeline/qa", "--detailed-exitcode")

    assert planned.code == 2, planned.out + planned.err
    assert "~ update Agent/qa-agent" in planned.out
    assert "Agent/other" not in planned.out.split("Warning:")[0]
    assert "--target is in effect" in planned.out
    assert "Pipeline/qa" in planned.out.split("Warning:")[1]


def test_item6_targeting_a_deployment_includes_its_pipeline_and_agents(
    gitops: GitOps, qa: Path
) -> None:
    planned = gitops.cli("plan", str(qa), "--target", "Deployment/qa-dev", "--format", "json")

    assert planned.code == 0, planned.err
    plan = json.loads(planned.out)
    assert sorted(a["id"] for a in plan["actions"]) == [
        "create:Agent/qa-agent",
        "create:Pipeline/qa",
        "deploy:Deployment/qa/development",
        "replace-graph:Pipeline/qa",
    ]
    assert any("--target is in effect" in warning for warning in plan["warnings"])


def test_item6_an_unknown_target_is_refused_before_any_write(gitops: GitOps, qa: Path) -> None:
    gitops.server.clear_request_log()

    refused = gitops.cli("apply", str(qa), "--target", "Agent/nope", "--auto-approve")

    assert refused.code == 1
    assert "--target Agent/nope" in refused.err
    assert "no such resource" in refused.err
    assert gitops.writes() == []


# ---- item 7: a ${VAR:-default} default is no secret; saved plans work with defaults --------


def test_item7_plan_out_works_with_a_default_whose_variable_is_unset(
    gitops: GitOps, qa: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QA_MODEL", raising=False)
    agent = qa / "agent.yaml"
    agent.write_text(agent.read_text().replace("model: gpt-4o", 'model: "${QA_MODEL:-gpt-4o}"'))
    plan_file = tmp_path / "plan.json"

    planned = gitops.cli("plan", str(qa), "--out", str(plan_file))

    assert planned.code == 0, planned.err
    assert '+ model = "gpt-4o"' in planned.out  # written in Git: shown, not masked
    applied = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")
    assert applied.code == 0, applied.err

    async def model(api: KaizenApi) -> str:
        return next(a.model for a in await api.agents.list_all() if a.name == "qa-agent")

    assert gitops.with_api(model) == "gpt-4o"


def test_item7_a_value_from_the_environment_stays_secret(
    gitops: GitOps, qa: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_PROMPT", "the prompt from the vault")
    agent = qa / "agent.yaml"
    agent.write_text(
        agent.read_text().replace("You check answers.", '"${QA_PROMPT:-a default prompt}"')
    )
    plan_file = tmp_path / "plan.json"

    planned = gitops.cli("plan", str(qa), "--out", str(plan_file))

    assert planned.code == 0, planned.err
    assert "the prompt from the vault" not in planned.out
    assert "the prompt from the vault" not in plan_file.read_text()


# ---- item 8: an empty manifest file is an error, and nothing is written --------------------


@pytest.mark.parametrize("content", ["", "# all commented out\n", "---\n---\n"])
def test_item8_an_empty_file_in_the_set_is_an_error_naming_it(
    gitops: GitOps, qa: Path, content: str
) -> None:
    assert gitops.cli("apply", str(qa), "--auto-approve").code == 0
    emptied = qa / "other.yaml"
    emptied.write_text(content)
    gitops.server.clear_request_log()

    for argv in (
        ["validate", str(qa)],
        ["plan", str(qa)],
        ["apply", str(qa), "--auto-approve", "--prune"],
    ):
        run = _validate(gitops, argv) if argv[0] == "validate" else gitops.cli(*argv)
        assert run.code == 1, argv
        assert f"{emptied}:1:1: " in run.err
        assert "no manifest" in run.err
    assert gitops.writes() == []


def _validate(gitops: GitOps, argv: list[str]) -> CliRun:
    """validate takes no --api-url, which ``gitops.cli`` adds."""
    gitops.capsys.readouterr()
    code = main(argv)
    captured = gitops.capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


# ---- item 10: --out that cannot be written is a clear error, before anything is read -------


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("missing/plan.json", "no such folder"),
        (".", "is a folder"),
        ("-", "standard output"),
    ],
)
def test_item10_plan_out_that_cannot_be_written_is_a_clear_error(
    gitops: GitOps,
    qa: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    out: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    gitops.server.clear_request_log()

    refused = gitops.cli("plan", str(qa), "--out", out)

    assert refused.code == 1
    assert f"--out {out}" in refused.err
    assert message in refused.err
    assert "Traceback" not in refused.err
    assert not (tmp_path / "-").exists()
    assert gitops.server.request_log() == []  # refused before contacting the server


# ---- item 18: saved plans say how to apply them, and why a re-apply is refused -------------


def test_item18_plan_out_says_how_to_apply_the_saved_plan(
    gitops: GitOps, qa: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "reviewed.plan"

    planned = gitops.cli("plan", str(qa), "--out", str(plan_file))

    assert planned.code == 0, planned.err
    assert f"kaizenctl apply --plan {plan_file}" in planned.out + planned.err


def test_item18_reapplying_an_applied_plan_says_it_was_applied_already(
    gitops: GitOps, qa: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "reviewed.plan"
    assert gitops.cli("plan", str(qa), "--out", str(plan_file)).code == 0
    assert gitops.cli("apply", "--plan", str(plan_file), "--auto-approve").code == 0
    gitops.server.clear_request_log()

    again = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")

    assert again.code == 1
    assert "already applied" in again.err
    assert "changed since the plan was made" not in again.err
    assert gitops.writes() == []


def test_item18_a_plan_made_stale_by_someone_else_says_it_is_stale(
    gitops: GitOps, qa: Path, tmp_path: Path
) -> None:
    assert gitops.cli("apply", str(qa), "--auto-approve").code == 0
    agent = qa / "agent.yaml"
    agent.write_text(agent.read_text().replace("temperature: 0.2", "temperature: 0.4"))
    plan_file = tmp_path / "reviewed.plan"
    assert gitops.cli("plan", str(qa), "--out", str(plan_file)).code == 0

    async def edit(api: KaizenApi) -> None:
        other = next(a for a in await api.agents.list_all() if a.name == "other")
        await api.agents.update(other.id, {"description": "by hand"})

    gitops.with_api(edit)

    refused = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")

    assert refused.code == 1
    assert "stale" in refused.err
    assert "Agent/other: changed since the plan was made" in refused.err
    assert "already applied" not in refused.err
