"""Tokens (refresh under load, rotation, login again), paging, parallelism, errors, settling."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kaizenctl.api.connect import connect_v1, open_api
from kaizenctl.api.contract_v1 import ContractV1Api
from kaizenctl.api.errors import (
    AuthenticationError,
    ConflictError,
    DeploymentTimeoutError,
    ResponseFormatError,
    ValidationFailedError,
)
from kaizenctl.api.models import Agent, Graph, GraphEdge, GraphNode, User
from kaizenctl.api.retry import RetryPolicy
from tests.api.api_fake import AGENT, PASSWORD, FakeKaizen, Fault
from tests.api.api_helpers import FakeClock, password_settings, run, token_settings, with_api


def test_one_refresh_serves_twenty_concurrent_requests(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.seed_agents(20)
    fake.delay = 0.01  # keep the twenty in flight together
    fake.expire_access_tokens()

    async def scenario(api: ContractV1Api) -> list[Agent]:
        return await asyncio.gather(*(api.agents.get(f"a-{n:03d}") for n in range(20)))

    agents = with_api(fake, policy, scenario)
    assert len(agents) == 20
    assert fake.refresh_calls == 1
    assert fake.count("GET", "/agents/a-000") == 2  # refused once, then served


def test_the_rotated_refresh_token_is_kept_for_the_next_refresh(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    async def scenario(api: ContractV1Api) -> str | None:
        fake.expire_access_tokens()
        await api.agents.list_all()
        fake.expire_access_tokens()
        await api.agents.list_all()  # would fail if the first, now dead, token were reused
        return api.session.tokens.refresh_token

    latest = with_api(fake, policy, scenario)
    assert fake.refresh_calls == 2
    assert latest in fake.refresh_tokens
    assert "initial-refresh-token" not in fake.refresh_tokens


def test_a_second_401_after_refreshing_tells_the_user_to_log_in_again(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.expire_access_tokens()
    fake.add_fault("GET", "/agents", Fault("answer", 401), times=2)
    with pytest.raises(AuthenticationError) as caught:
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert "log in again" in str(caught.value)
    assert "GET /api/v1/agents answered 401" in str(caught.value)
    assert fake.refresh_calls == 1


def test_a_token_that_expires_during_every_429_wait_is_renewed_every_time(
    fake: FakeKaizen, clock: FakeClock
) -> None:
    # Each Retry-After wait outlives a short token: 401, renew, 429, wait, 401, renew, ...
    # Six refusals in one request, each cured by a renewal, are not "log in again".
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, random=lambda: 0.5)
    for _ in range(6):
        fake.add_fault("GET", "/agents", Fault("answer", 401))
        fake.add_fault("GET", "/agents", Fault("answer", 429, {"Retry-After": "1"}))
    assert with_api(fake, policy, lambda api: api.agents.list_all()) == []
    assert fake.refresh_calls == 6
    assert clock.sleeps == [1.0] * 6


def test_a_lost_refresh_answer_falls_back_to_logging_in_with_credentials(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.expire_access_tokens()
    fake.add_fault("POST", "/auth/refresh", Fault("reset_after_commit"))
    settings = token_settings(email="ops@example.com", password=PASSWORD)
    assert with_api(fake, policy, lambda api: api.agents.list_all(), settings) == []
    assert fake.refresh_calls == 1  # never re-sent: that token is dead now
    assert fake.login_calls == 1


def test_a_lost_refresh_answer_without_credentials_says_to_log_in_again(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.expire_access_tokens()
    fake.add_fault("POST", "/auth/refresh", Fault("reset_after_commit"))
    with pytest.raises(AuthenticationError, match=r"log in again.*KAIZEN_EMAIL"):
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert fake.refresh_calls == 1


def test_a_refused_refresh_under_load_is_tried_once_not_by_every_waiter(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.seed_agents(10)
    fake.delay = 0.01
    fake.expire_access_tokens()
    fake.refresh_tokens.clear()

    async def scenario(api: ContractV1Api) -> list[object]:
        return await asyncio.gather(
            *(api.agents.get(f"a-{n:03d}") for n in range(10)), return_exceptions=True
        )

    results = with_api(fake, policy, scenario)
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert fake.refresh_calls == 1


def test_email_and_password_log_in_up_front(fake: FakeKaizen, policy: RetryPolicy) -> None:
    user = with_api(fake, policy, lambda api: api.current_user(), password_settings())
    assert isinstance(user, User)
    assert fake.login_calls == 1


def test_wrong_credentials_name_the_variables_to_check(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    with pytest.raises(AuthenticationError, match="check KAIZEN_EMAIL and KAIZEN_PASSWORD"):
        with_api(
            fake, policy, lambda api: api.current_user(), password_settings(password="nope-nope")
        )


def test_lists_follow_total_pages_when_the_server_caps_page_size(
    policy: RetryPolicy,
) -> None:
    fake = FakeKaizen(page_size_cap=7)
    fake.seed_agents(23)
    agents = with_api(fake, policy, lambda api: api.agents.list_all())
    assert [a.name for a in agents] == [f"agent-{n:03d}" for n in range(23)]
    pages = [r for r in fake.requests if r.url.path == "/api/v1/agents"]
    assert sorted(int(r.url.params["page"]) for r in pages) == [1, 2, 3, 4]
    assert {r.url.params["page_size"] for r in pages} == {"100"}


def test_an_empty_list_is_one_request(fake: FakeKaizen, policy: RetryPolicy) -> None:
    assert with_api(fake, policy, lambda api: api.policies.list_all()) == []
    assert len(fake.requests) == 1


def test_no_more_than_parallelism_requests_are_in_flight(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.seed_agents(30)
    fake.delay = 0.005

    async def scenario(api: ContractV1Api) -> list[Agent]:
        return await asyncio.gather(*(api.agents.get(f"a-{n:03d}") for n in range(30)))

    with_api(fake, policy, scenario, token_settings(parallelism=4))
    assert fake.max_in_flight == 4


def test_a_validation_error_lists_field_and_message(policy: RetryPolicy) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        detail = [
            {"loc": ["body", "temperature"], "msg": "must be at most 2", "type": "x"},
            {"loc": ["body", "nodes", 0, "agent_id"], "msg": "unknown agent", "type": "y"},
        ]
        return httpx.Response(422, json={"detail": detail})

    async def main() -> None:
        api = await connect_v1(
            token_settings(), transport=httpx.MockTransport(handler), policy=policy
        )
        async with asyncio.timeout(5):
            try:
                await api.agents.update("a-1", {"temperature": 9})
            finally:
                await api.aclose()

    with pytest.raises(ValidationFailedError) as caught:
        run(main())
    assert str(caught.value) == (
        "PATCH /api/v1/agents/a-1 answered 422: temperature: must be at most 2; "
        "nodes.0.agent_id: unknown agent"
    )
    assert (caught.value.method, caught.value.status) == ("PATCH", 422)


def test_a_conflict_carries_the_servers_detail(fake: FakeKaizen, policy: RetryPolicy) -> None:
    fake.agents["a-1"] = {"id": "a-1", **AGENT}
    with pytest.raises(ConflictError, match="POST /api/v1/agents answered 409: name 'triage'"):
        with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))


def test_an_answer_outside_the_contract_is_a_response_format_error(policy: RetryPolicy) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "a-1"})  # no name, no model...

    async def main() -> None:
        api = await connect_v1(
            token_settings(), transport=httpx.MockTransport(handler), policy=policy
        )
        try:
            await api.agents.get("a-1")
        finally:
            await api.aclose()

    with pytest.raises(ResponseFormatError, match="unexpected Agent"):
        run(main())


def test_ids_are_quoted_into_one_path_segment(fake: FakeKaizen, policy: RetryPolicy) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - only the path sent matters here
        with_api(fake, policy, lambda api: api.agents.get("../users/me"))
    assert fake.requests[-1].url.raw_path == b"/api/v1/agents/..%2Fusers%2Fme"


def test_put_graph_sends_the_whole_graph(fake: FakeKaizen, policy: RetryPolicy) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    graph = Graph(
        nodes=[GraphNode(id="lead", node_type="supervisor", agent_id="a-1")],
        edges=[GraphEdge(source="lead", target="lead")],
    )

    async def main() -> None:
        api = await connect_v1(
            token_settings(), transport=httpx.MockTransport(handler), policy=policy
        )
        try:
            await api.pipelines.put_graph("p-1", graph)
        finally:
            await api.aclose()

    run(main())
    assert sent[0].method == "PUT"
    assert sent[0].url.path == "/api/v1/pipelines/p-1/nodes"
    body = httpx.Response(200, content=sent[0].content).json()
    assert body["nodes"][0]["id"] == "lead"
    assert body["edges"] == [
        {
            "source_node_id": "lead",
            "target_node_id": "lead",
            "source_handle": None,
            "target_handle": None,
        }
    ]


def test_wait_settled_polls_with_backoff_until_active(
    fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock
) -> None:
    fake.settle_after_gets = 4
    fake.pipelines["p-1"] = {"id": "p-1", "name": "s", "pattern": "x", "version": 1}
    dep = fake._new_deployment("p-1", "staging", 1).json()
    settled = with_api(
        fake, policy, lambda api: api.deployments.wait_settled(dep["id"], timeout=30)
    )
    assert settled.status == "active"
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2])


def test_wait_settled_times_out_naming_the_deployment(
    fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock
) -> None:
    fake.settle_after_gets = 10**6
    fake.pipelines["p-1"] = {"id": "p-1", "name": "s", "pattern": "x", "version": 1}
    dep = fake._new_deployment("p-1", "staging", 1).json()
    with pytest.raises(DeploymentTimeoutError, match=f"deployment {dep['id']} still 'pending'"):
        with_api(fake, policy, lambda api: api.deployments.wait_settled(dep["id"], timeout=10))
    assert max(clock.sleeps) == 2.0  # the cap
    assert clock.now == pytest.approx(10)


def test_open_api_closes_the_connection(fake: FakeKaizen, policy: RetryPolicy) -> None:
    async def main() -> bool:
        async with open_api(token_settings(), transport=fake.transport(), policy=policy) as api:
            await api.agents.list_all()
            assert isinstance(api, ContractV1Api)
            session = api.session
        return session._client.is_closed

    assert run(main())


def test_server_identity_has_no_credentials(fake: FakeKaizen, policy: RetryPolicy) -> None:
    async def identity(api: ContractV1Api) -> str:
        return api.server_identity

    assert with_api(fake, policy, identity) == "http://127.0.0.1:9"
