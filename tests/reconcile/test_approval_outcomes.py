"""Awaiting approval and rejected: apply outcomes that are neither done nor failed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from kaizenctl.reconcile import apply as apply_module
from kaizenctl.reconcile.apply import (
    ActionFailed,
    ApplyResult,
    AwaitingApproval,
    PromotionRejected,
    execute_plan,
)
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.plan import Action, Plan, SlotPayload
from kaizenctl.reconcile.state import State
from kaizenctl.render import render_apply
from tests.paths import SCHEMAS as PACKAGED_SCHEMAS

SCHEMAS = PACKAGED_SCHEMAS / "output"


def _action(name: str, *depends: str) -> Action:
    return Action(
        id=f"promote:Deployment/{name}",
        verb="promote",
        kind="Deployment",
        name=name,
        summary=f"promote {name}",
        depends_on=tuple(f"promote:Deployment/{d}" for d in depends),
        payload=SlotPayload(
            pipeline=name,
            environment="staging",
            expected_version=1,
            deployment=name,
            source_environment="development",
        ),
    )


def _run(
    monkeypatch: pytest.MonkeyPatch, actions: list[Action], raises: dict[str, Exception]
) -> ApplyResult:
    async def fake_execute(context: Any, action: Action) -> str:
        if action.name in raises:
            raise raises[action.name]
        return "ok"

    monkeypatch.setattr(apply_module, "_execute", fake_execute)
    live = LiveSnapshot(state=State(), listed={}, deployments=[])
    return asyncio.run(execute_plan(None, Plan(actions=tuple(actions)), live))  # type: ignore[arg-type]


def test_waiting_for_approval_is_its_own_outcome_and_holds_back_dependents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    actions = [
        _action("a/staging"),
        _action("a/production", "a/staging"),
        _action("a/after", "a/production"),
        _action("a/later", "a/after"),
    ]
    result = _run(
        monkeypatch, actions, {"a/production": AwaitingApproval("promotion p-1 waits for approval")}
    )
    statuses = [o.status for o in result.outcomes]
    assert statuses == ["done", "awaiting-approval", "skipped", "skipped"]
    # Everything behind the approval says so, through a chain of skips too.
    assert result.outcomes[2].message == "waits for approval of promote:Deployment/a/production"
    assert result.outcomes[3].message == result.outcomes[2].message
    assert not result.ok
    assert result.awaiting_approval


def test_a_failure_beside_an_approval_is_not_just_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(
        monkeypatch,
        [_action("a/production"), _action("b/development")],
        {"a/production": AwaitingApproval("waits"), "b/development": ActionFailed("boom")},
    )
    assert [o.status for o in result.outcomes] == ["awaiting-approval", "failed"]
    assert not result.awaiting_approval


def test_a_rejection_is_reported_as_such_and_is_not_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = _run(
        monkeypatch,
        [_action("a/production"), _action("a/after", "a/production")],
        {"a/production": PromotionRejected("rejected by ops: not this week")},
    )
    assert [o.status for o in result.outcomes] == ["rejected", "skipped"]
    assert result.outcomes[1].message == "skipped: promote:Deployment/a/production did not succeed"
    assert not result.awaiting_approval
    assert not result.ok


def _mixed(monkeypatch: pytest.MonkeyPatch) -> ApplyResult:
    return _run(
        monkeypatch,
        [_action("a/staging"), _action("a/production", "a/staging"), _action("b/production")],
        {
            "a/production": AwaitingApproval("promotion p-1 waits for approval"),
            "b/production": PromotionRejected("promotion p-2 was rejected: not now"),
        },
    )


def test_text_markdown_and_json_name_both_outcomes(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _mixed(monkeypatch)
    text = render_apply(result, "text")
    assert "Awaiting approval on the platform" in text
    assert "promote a/production: promotion p-1 waits for approval" in text
    assert "Rejected by the platform's approvers (1):" in text
    assert "1 awaiting approval, 1 rejected" in text
    markdown = render_apply(result, "markdown")
    assert "#### Awaiting approval on the platform" in markdown
    assert "#### Rejected by the platform's approvers (1):" in markdown
    document = json.loads(render_apply(result, "json"))
    assert [o["action_id"] for o in document["awaiting_approval"]] == [
        "promote:Deployment/a/production"
    ]
    assert [o["status"] for o in document["rejected"]] == ["rejected"]
    assert document["ok"] is False
    schema = json.loads((SCHEMAS / "apply-result.v1.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)


def test_only_waiting_reads_awaiting_approval_in_the_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = _run(monkeypatch, [_action("a/production")], {"a/production": AwaitingApproval("w")})
    assert "Apply awaiting approval: 0 done, 1 awaiting approval" in render_apply(result, "text")


def test_the_schema_requires_the_new_lists() -> None:
    schema = json.loads((SCHEMAS / "apply-result.v1.json").read_text())
    document = {
        "format_version": 1,
        "type": "apply-result",
        "ok": True,
        "interrupted": False,
        "done": [],
        "failed": [],
        "skipped": [],
        "interrupted_actions": [],
        "not_started": [],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(document)
