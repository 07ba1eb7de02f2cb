"""The studio dialect against recorded answers of a live server: one test per quirk."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from kaizenctl.api.errors import NotFoundError, RateLimitedError, ValidationFailedError
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.api.studio import StudioApi, float32
from tests.api.api_helpers import FakeClock, run
from tests.studio.replay import Replay, fixture
from tests.studio.studio_fake import use_studio_api

T = TypeVar("T")
ORG = "36be9f4a-dc6d-42a4-a346-3c26a1e682a1"
SETTINGS = ConnectionSettings(
    api_url="https://studio.test",
    token="recorded-token",
    dialect="studio",
    workspace="kaizenctl-ws",
)
SCOPE = ("auth-users-me", "workspaces-list-after-create")


def with_api(
    replay: Replay,
    policy: RetryPolicy,
    use: Callable[[StudioApi], Awaitable[T]],
    settings: ConnectionSettings = SETTINGS,
) -> T:
    return use_studio_api(replay.transport(), policy, use, settings)


def test_login_is_json_and_its_answer_gives_tokens_and_organization(policy: RetryPolicy) -> None:
    replay = Replay("auth-login")
    settings = ConnectionSettings(
        api_url="https://studio.test",
        email="kaizenctl@example.com",
        password="pw-123456",
        dialect="studio",
        workspace="w",
    )

    async def organization(api: StudioApi) -> str:
        return await api.scope.organization_id()

    assert with_api(replay, policy, organization, settings) == ORG
    (login,) = replay.sent
    assert login.headers["content-type"] == "application/json"
    assert json.loads(login.content) == {"email": "kaizenctl@example.com", "password": "pw-123456"}
    # The organization came with the login: no /users/me was needed.
    assert [r.url.path for r in replay.sent] == ["/api/v1/auth/login"]


def test_the_error_envelope_names_each_field_the_server_refused(policy: RetryPolicy) -> None:
    replay = Replay(*SCOPE, "agents-create-contract-shape-422")

    async def create(api: StudioApi) -> None:
        await api.agents.create({"name": "triage", "system_prompt": "p", "model": "m"})

    with pytest.raises(ValidationFailedError) as caught:
        with_api(replay, policy, create)
    message = str(caught.value)
    assert "answered 422" in message
    assert "workspace_id: Field required" in message
    assert "agent_type: Field required" in message
    assert "body." not in message


def test_a_429_on_login_is_waited_out_by_its_retry_after(
    policy: RetryPolicy, clock: FakeClock
) -> None:
    limited = fixture("errors-429-login-rate-limit")["exchanges"][-1]
    replay = Replay(answers=[limited, fixture("auth-login")])
    settings = ConnectionSettings(
        api_url="https://studio.test",
        email="e@x.io",
        password="pw-123456",
        dialect="studio",
        workspace="w",
    )
    with_api(replay, policy, lambda api: api.scope.organization_id(), settings)
    assert clock.sleeps == [15.0]
    assert len(replay.sent) == 2


def test_a_429_whose_error_is_a_string_reads_as_its_message(policy: RetryPolicy) -> None:
    limited = fixture("errors-429-login-rate-limit")["exchanges"][-1]
    replay = Replay(answers=[dict(limited) for _ in range(10)])
    settings = ConnectionSettings(
        api_url="https://studio.test",
        email="e@x.io",
        password="pw-123456",
        dialect="studio",
        workspace="w",
    )
    with pytest.raises(RateLimitedError) as caught:
        with_api(replay, policy, lambda api: api.scope.organization_id(), settings)
    assert "Too many attempts" in str(caught.value)


def test_403_for_another_organizations_agent_means_not_ours(policy: RetryPolicy) -> None:
    replay = Replay("cross-org-read-agents")
    with pytest.raises(NotFoundError, match="not ours"):
        with_api(replay, policy, lambda api: api.agents.get("63a802e4-098d-4451-bb4a-b358b1b15ee9"))


def test_another_organizations_pipeline_answered_200_is_refused(policy: RetryPolicy) -> None:
    # The pipeline belongs to ORG; the caller here is of another organization.
    me = fixture("auth-users-me")
    me["response_body"] = {**me["response_body"], "organization_id": "someone-else"}
    replay = Replay(answers=[me, fixture("cross-org-read-pipelines")])
    with pytest.raises(NotFoundError, match="another organization"):
        with_api(
            replay, policy, lambda api: api.pipelines.get("12d135c4-366d-434c-a7c6-128dcf242083")
        )


def test_float32_temperatures_read_back_as_written(policy: RetryPolicy) -> None:
    replay = Replay(*SCOPE, "agents-read")
    agent = with_api(
        replay, policy, lambda api: api.agents.get("63a802e4-098d-4451-bb4a-b358b1b15ee9")
    )
    assert fixture("agents-read")["response_body"]["temperature"] == 0.30000001192092896
    assert agent.temperature == 0.3
    assert agent.tools == []
    assert agent.is_active is False  # status draft
    assert agent.agent_type is None  # chat, the default
    assert agent.provider is None


@pytest.mark.parametrize("written", [0.0, 0.1, 0.2, 0.3, 0.7, 1.0, 1.3, 1.99, 2.0, 0.123])
def test_float32_round_trip_gives_back_the_written_value(written: float) -> None:
    import struct

    widened = struct.unpack("<f", struct.pack("<f", written))[0]
    assert float32(widened) == written


def test_empty_string_and_zero_read_as_unset(policy: RetryPolicy) -> None:
    recorded = fixture("agents-create-minimal-defaults")
    body = recorded["response_body"]
    assert body["description"] == ""
    assert body["max_tokens"] == 0
    read = {
        "method": "GET",
        "path": f"/api/v1/agents/{body['id']}",
        "status": 200,
        "response_body": {**body, "tools": [], "contexts": []},
    }
    replay = Replay(*SCOPE, answers=[read])
    agent = with_api(replay, policy, lambda api: api.agents.get(body["id"]))
    assert agent.description is None
    assert agent.max_tokens is None


def test_graph_configs_in_json_text_and_the_literal_none_are_parsed(policy: RetryPolicy) -> None:
    replay = Replay(*SCOPE, "pipelines-graph-read-back")
    nodes = with_api(
        replay, policy, lambda api: api.pipelines.get_nodes("12d135c4-366d-434c-a7c6-128dcf242083")
    )
    by_id = {node.id: node for node in nodes}
    assert by_id["tech"].config == {}  # stored as "None"
    assert by_id["billing"].config == {}  # stored as "{}"
    assert by_id["refunds"].config == {"requires_approval": True}
    assert by_id["intake"].config == {"source": "zendesk", "n": 1.5, "nested": {"a": [1, 2]}}
    assert by_id["intake"].agent_id is None  # stored as ""
    assert by_id["tech"].x == 300.5


def test_default_handles_read_as_none_and_others_as_written(policy: RetryPolicy) -> None:
    replay = Replay(*SCOPE, "pipelines-graph-read-back")
    edges = with_api(
        replay,
        policy,
        lambda api: api.pipelines.get_connections("12d135c4-366d-434c-a7c6-128dcf242083"),
    )
    handles = {(e.source, e.target): (e.source_handle, e.target_handle) for e in edges}
    assert handles[("intake", "lead")] == (None, None)  # output / input
    assert handles[("lead", "lead")] == ("loop", "in2")


def test_supervisor_reads_as_supervisor_worker(policy: RetryPolicy) -> None:
    replay = Replay(*SCOPE, "pipelines-graph-read-back")
    pipeline = with_api(
        replay, policy, lambda api: api.pipelines.get("12d135c4-366d-434c-a7c6-128dcf242083")
    )
    assert pipeline.pattern == "supervisor_worker"
    assert pipeline.config == {}


def test_policy_conditions_as_text_on_create_and_as_object_on_read_mean_the_same(
    policy: RetryPolicy,
) -> None:
    replay = Replay(*SCOPE, "policies-create", "policies-read")

    async def both(api: StudioApi) -> tuple[Any, Any]:
        created = await api.policies.create(
            {
                "name": "no-prod-deletes",
                "description": "Nobody deletes prod",
                "effect": "deny",
                "resource_type": "deployment",
                "actions": ["delete"],
                "conditions": [
                    {"attribute": "environment", "operator": "eq", "value": "production"}
                ],
            }
        )
        read = await api.policies.get(created.id)
        return created, read

    created, read = with_api(replay, policy, both)
    assert created == read
    assert read.actions == ["delete"]
    assert [c.model_dump() for c in read.conditions] == [
        {"attribute": "environment", "operator": "eq", "value": "production"}
    ]
    # What was sent is exactly the recorded request: one action, dotted field, no null.
    (sent,) = replay.bodies("POST", "/api/v1/policies")
    assert sent == fixture("policies-create")["request_body"]


def test_every_pipeline_list_names_the_organization(policy: RetryPolicy) -> None:
    replay = Replay(*SCOPE, "pipelines-list")
    pipelines = with_api(replay, policy, lambda api: api.pipelines.list_all())
    listing = [r for r in replay.sent if r.url.path == "/api/v1/pipelines"]
    assert listing
    assert all(r.url.params["organization_id"] == ORG for r in listing)
    assert sorted(p.name for p in pipelines) == ["bad-status", "support", "support"]
    # The server stored an unvalidated status; it is read as it is, so a plan shows it as a
    # change back to the manifest's (which kaizenctl validates).
    assert {p.name: p.status for p in pipelines}["bad-status"] == "bogus"


def test_reads_after_a_500_are_retried_on_a_fresh_connection(policy: RetryPolicy) -> None:
    # errors-500-then-connection-reset: the request after an unhandled 500 meets a reset.
    recorded = fixture("errors-500-then-connection-reset")
    assert recorded["status"] is None  # no answer: the connection was reset
    reset = {"method": recorded["method"], "path": recorded["path"], "raise": True}
    empty = {
        "method": "GET",
        "path": "/api/v1/policies",
        "status": 200,
        "response_body": {"records": [], "total": 0},
    }
    replay = Replay(*SCOPE, answers=[reset, empty])
    assert with_api(replay, policy, lambda api: api.policies.list_all()) == []
    assert [r.url.path for r in replay.sent].count("/api/v1/policies") == 2


def test_a_graph_write_that_answers_200_but_skipped_inserts_is_reported(
    policy: RetryPolicy,
) -> None:
    from kaizenctl.api.models import Graph, GraphEdge, GraphNode
    from kaizenctl.api.studio import GraphNotStoredError

    recorded = fixture("pipelines-graph-put-partial-failure")
    stored = recorded["response_body"]
    pipeline_id = stored["data"]["id"]
    before = {
        "method": "GET",
        "path": f"/api/v1/pipelines/{pipeline_id}",
        "status": 200,
        "response_body": {"data": {**stored["data"], "nodes": [], "connections": []}},
    }
    after = {**before, "response_body": stored}
    replay = Replay("auth-users-me", answers=[before, recorded, after])
    graph = Graph(
        nodes=[
            GraphNode(id="c", node_type="agent"),
            GraphNode(id="collides", node_type="agent"),
            GraphNode(id="d", node_type="agent"),
        ],
        edges=[GraphEdge(source="c", target="collides")],
    )
    with pytest.raises(GraphNotStoredError) as caught:
        with_api(replay, policy, lambda api: api.pipelines.put_graph(pipeline_id, graph))
    message = str(caught.value)
    assert "node collides was not stored" in message
    assert "edge c → collides was not stored" in message
    (sent,) = replay.bodies("PUT", f"/api/v1/pipelines/{pipeline_id}/graph")
    # Labels carry the manifest ids; the stored ids are derived per pipeline.
    assert [n["label"] for n in sent["nodes"]] == ["c", "collides", "d"]
    assert all(n["id"] not in ("c", "collides", "d") for n in sent["nodes"])


def test_archived_agents_stay_listed_and_are_left_out(policy: RetryPolicy) -> None:
    recorded = fixture("agents-list-status-archived")
    assert [a["status"] for a in recorded["response_body"]["records"]] == ["archived"]
    replay = Replay(*SCOPE, "agents-list-status-archived")
    assert with_api(replay, policy, lambda api: api.agents.list_all()) == []


def test_the_probe_tells_a_studio_server_from_a_contract_one(policy: RetryPolicy) -> None:
    from kaizenctl.api.connect import detect_dialect

    studio = Replay("pipelines-patterns")
    assert run(detect_dialect(SETTINGS, transport=studio.transport(), policy=policy)) == "studio"
    assert [r.headers.get("authorization") for r in studio.sent] == [None]
    contract = Replay(
        answers=[
            {
                "method": "GET",
                "path": "/api/v1/pipelines/patterns",
                "status": 401,
                "response_body": {"detail": "Not authenticated"},
            }
        ]
    )
    assert run(detect_dialect(SETTINGS, transport=contract.transport(), policy=policy)) == (
        "contract"
    )


def test_a_new_agent_version_sends_a_json_body_and_reads_its_snapshot(
    policy: RetryPolicy,
) -> None:
    recorded = fixture("agent-versions-create")
    agent_id = recorded["response_body"]["agent_id"]
    empty = fixture("agent-versions-list-empty")
    empty["path"] = f"/api/v1/agents/{agent_id}/versions"
    replay = Replay(answers=[empty, recorded])
    version = with_api(replay, policy, lambda api: api.agents.create_version(agent_id))
    assert version.version == 1
    assert version.snapshot["temperature"] == 0.20000000298023224
    assert replay.bodies("POST", f"/api/v1/agents/{agent_id}/versions") == [{}]


def test_lists_page_until_a_short_page_since_total_is_the_page_length(
    policy: RetryPolicy,
) -> None:
    from tests.studio.studio_fake import FakeStudio

    studio = FakeStudio()
    for number in range(150):
        policy_id = studio.new_id()
        studio.policies[policy_id] = {
            "id": policy_id,
            "organization_id": studio.users[next(iter(studio.users))]["organization_id"],
            "name": f"p{number}",
            "description": "",
            "resource_type": "agent",
            "action": "execute",
            "effect": "deny",
            "conditions": {},
        }

    async def count(api: StudioApi) -> int:
        return len(await api.policies.list_all())

    assert studio.use_api(policy, count) == 150
    assert studio.count("GET", "/policies") == 2
