"""The gateway, deployment and promotion services read the recorded exchanges as the
live server wrote them (respx-style replay with httpx.MockTransport)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kaizenctl.api.gateways import ApprovalRequiredError, StudioRollout, parse_promotion
from tests.studio.rollout_fake import recorded, use_rollout


def _replay(*names: str) -> tuple[httpx.MockTransport, list[str]]:
    """Answer each request with the recorded exchange of the same method and path."""
    exchanges = [recorded(name) for name in names]
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        for exchange in exchanges:
            if exchange["method"] == request.method and exchange["path"] == request.url.path:
                return httpx.Response(exchange["status"], json=exchange["response_body"])
        return httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "Not Found"}})

    return httpx.MockTransport(handle), seen


def test_lists_read_the_recorded_shapes() -> None:
    transport, _ = _replay("gateways-list", "deployments-list", "promotions-list")

    async def read(rollout: StudioRollout) -> tuple[Any, Any, Any]:
        return (
            await rollout.gateways.list_all(),
            await rollout.agent_deployments.list_all(),
            await rollout.promotions.list_all(),
        )

    gateways, deployments, promotions = use_rollout(transport, read)
    assert gateways[0].name == "dev-gw"
    # "" means unset on this server.
    assert gateways[0].description is None
    assert gateways[0].health_check_url is None
    assert {d.status for d in deployments} <= {"active", "stopped", "failed"}
    assert any(d.agent_version_id is None for d in deployments)
    assert any(p.status == "completed" and p.target_deployment_id for p in promotions)


def test_logs_are_sorted_by_time() -> None:
    transport, _ = _replay("deployments-logs")
    deployment_id = recorded("deployments-logs")["path"].split("/")[-2]
    logs = use_rollout(transport, lambda r: r.agent_deployments.logs(deployment_id))
    assert [entry.event_type for entry in logs] == ["started", "building", "registered"]


def test_a_failed_deploy_is_an_answer_not_an_error() -> None:
    transport, _ = _replay("deployments-list-empty", "deployments-create-gateway-unreachable")
    body = recorded("deployments-create-gateway-unreachable")["request_body"]
    deployment = use_rollout(
        transport, lambda r: r.agent_deployments.deploy(body["agent_id"], body["gateway_id"], None)
    )
    assert deployment.status == "failed"
    assert deployment.error_message == "All connection attempts failed"


def test_stopping_a_stopped_deployment_reads_it_back() -> None:
    again = recorded("deployments-stop-again")
    deployment_id = again["path"].split("/")[-2]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(again["status"], json=again["response_body"])
        stopped = recorded("deployments-stop")["response_body"]
        return httpx.Response(200, json={**stopped, "id": deployment_id})

    stopped = use_rollout(
        httpx.MockTransport(handle), lambda r: r.agent_deployments.stop(deployment_id)
    )
    assert stopped.status == "stopped"


def test_a_pending_promotion_without_created_at_parses() -> None:
    body = recorded("promotions-create-production-needs-approval")["response_body"]
    assert "created_at" not in body
    promotion = parse_promotion(body)
    assert (promotion.status, promotion.requires_approval) == ("pending", True)
    assert promotion.target_deployment_id is None


def test_a_promotion_waiting_for_approval_is_never_sent_to_execute() -> None:
    transport, seen = _replay()
    pending = parse_promotion(
        recorded("promotions-create-production-needs-approval")["response_body"]
    )
    with pytest.raises(ApprovalRequiredError, match="never executes it"):
        use_rollout(transport, lambda r: r.promotions.execute(pending))
    assert seen == []


def test_a_recorded_snapshot_matches_the_agent_it_was_taken_of() -> None:
    """``version: latest`` redeploys only when the agent changed since its snapshot."""
    import json

    from kaizenctl.api.models import Agent
    from kaizenctl.reconcile.rollout import snapshot_matches

    snapshot = json.loads(recorded("agent-versions-create")["response_body"]["config_snapshot"])
    # As a dialect reads the agent back: float32 widened away, "" and 0 as unset, and the
    # server's default agent type as unset.
    agent = Agent(
        id="a",
        name="triage",
        system_prompt="You triage.",
        model="gpt-4o-mini",
        provider="openai",
        temperature=0.2,
        max_tokens=512,
        description=None,
    )
    assert snapshot_matches(snapshot, agent)
    assert not snapshot_matches(snapshot, agent.model_copy(update={"system_prompt": "Changed"}))
    assert not snapshot_matches(snapshot, agent.model_copy(update={"temperature": 0.3}))
    assert not snapshot_matches({}, agent)
