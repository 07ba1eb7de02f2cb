"""A long apply outside a terminal prints periodic progress (issue 14, item 15)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kaizenctl.cli import main
from kaizenctl.commands import progress
from kaizenctl.commands.progress import Heartbeat
from kaizenctl.reconcile.plan import Action, CreatePayload, SlotPayload
from kaizenctl.server.testing import running_server
from tests.api.api_helpers import FakeClock


def _action(verb: str, kind: str, name: str, summary: str) -> Action:
    payload = (
        SlotPayload(
            pipeline="qa", environment="development", expected_version=1, deployment=name
        )
        if verb == "deploy"
        else CreatePayload(fields={})
    )
    return Action(
        id=f"{verb}:{kind}/{name}",
        verb=verb,
        kind=kind,
        name=name,
        summary=summary,
        payload=payload,
    )


DEPLOY = _action(
    "deploy",
    "Deployment",
    "qa/development",
    "Deployment/qa-dev: qa in development v1 → v2 (deploy)",
)
CREATE = _action("create", "Agent", "a", "create Agent/a")


def test_item15_a_heartbeat_says_what_is_still_running_and_for_how_long() -> None:
    clock = FakeClock()
    heartbeat = Heartbeat(3, clock=clock, sleep=clock.sleep)
    heartbeat.started(CREATE)
    heartbeat.finished(CREATE)
    clock.now = 5.0
    heartbeat.started(DEPLOY)
    clock.now = 35.0

    assert heartbeat.line() == (
        "… 35 s: 1/3 actions finished; "
        "still deploying Deployment/qa-dev: qa in development v1 → v2 (deploy) (30 s)"
    )


def test_item15_the_heartbeat_beats_every_interval_until_cancelled() -> None:
    clock = FakeClock()
    heartbeat = Heartbeat(1, interval=30, clock=clock, sleep=clock.sleep)
    heartbeat.started(DEPLOY)
    lines: list[str] = []

    async def scenario() -> None:
        task = asyncio.ensure_future(heartbeat.run(lines.append))
        while len(lines) < 2:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

    assert clock.sleeps[:2] == [30, 30]
    assert lines[0].startswith("… 30 s: 0/1 actions finished; still deploying Deployment/qa-dev")
    assert "(60 s)" in lines[1]


def test_item15_apply_in_ci_prints_progress_lines_while_deploying(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifests = tmp_path / "qa.yaml"
    manifests.write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: qa-agent}\n"
        "spec: {system_prompt: Check., provider: openai, model: gpt-4o}\n"
        "---\napiVersion: kaizen.io/v1\nkind: Pipeline\nmetadata: {name: qa}\n"
        "spec: {pattern: sequential, nodes: [{id: check, node_type: agent, agent: qa-agent}]}\n"
        "---\napiVersion: kaizen.io/v1\nkind: Deployment\nmetadata: {name: qa-dev}\n"
        "spec: {pipeline: qa, environment: development}\n"
    )
    # Seconds, not 30: the deployment below takes about a second to settle.
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_S", 0.2)
    with running_server(deploy_step_s=0.5) as server:
        monkeypatch.setenv("KAIZEN_API_URL", server.url)
        monkeypatch.setenv("KAIZEN_EMAIL", server.email)
        monkeypatch.setenv("KAIZEN_PASSWORD", server.password)
        monkeypatch.delenv("KAIZEN_TOKEN", raising=False)

        assert main(["apply", "--auto-approve", str(manifests)]) == 0

    err = capsys.readouterr().err  # not a terminal here, as in CI
    beats = [line for line in err.splitlines() if line.startswith("… ")]
    assert beats, err
    assert any("still deploying Deployment/qa-dev" in line for line in beats), beats
