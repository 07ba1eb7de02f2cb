"""The API layer against the reference server, with its fault knobs on.

Each flow checks an invariant that faults must not break (no duplicate made,
one refresh for many waiters, every page read) and also checks, from the
server's request log, that the faults really fired — a quiet run proves nothing.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import Counter
from typing import Any

import pytest

from kaizenctl.api.connect import connect_v1
from kaizenctl.api.contract_v1 import ContractV1Api
from kaizenctl.api.errors import ConflictError
from kaizenctl.api.httplog import configure_logging
from kaizenctl.api.models import Graph, GraphEdge, GraphNode
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.server.testing import ManualClock, RunningServer
from tests.api.api_helpers import run

pytestmark = pytest.mark.timeout(120)

# Real sleeps, but short: the server's Retry-After is set small below.
FAST_POLICY = RetryPolicy(max_attempts=30, base_delay=0.01, max_delay=0.2, total_budget=60)


def _agent(name: str) -> dict[str, Any]:
    return {"name": name, "system_prompt": "You help.", "provider": "openai", "model": "gpt-4o"}


def _settings(server: RunningServer, **overrides: Any) -> ConnectionSettings:
    values: dict[str, Any] = {
        "api_url": server.url,
        "email": server.email,
        "password": server.password,
    }
    values.update(overrides)
    return ConnectionSettings(**values)


async def _open(server: RunningServer, **overrides: Any) -> ContractV1Api:
    return await connect_v1(_settings(server, **overrides), policy=FAST_POLICY)


def test_the_whole_surface_works_without_faults(server: RunningServer) -> None:
    async def main() -> None:
        api = await _open(server)
        try:
            me = await api.current_user()
            assert me.email == server.email
            triage = await api.agents.create(_agent("triage"))
            worker = await api.agents.create(_agent("worker"))
            updated = await api.agents.update(triage.id, {"temperature": 0.2})
            assert updated.temperature == 0.2
            version = await api.agents.create_version(triage.id)
            assert version.version == 1
            assert [v.version for v in await api.agents.list_versions(triage.id)] == [1]

            pipeline = await api.pipelines.create({"name": "support", "pattern": "sequential"})
            graph = Graph(
                nodes=[
                    GraphNode(id="lead", node_type="supervisor", agent_id=triage.id),
                    GraphNode(id="work", node_type="agent", agent_id=worker.id),
                ],
                edges=[GraphEdge(source="lead", target="work")],
            )
            await api.pipelines.put_graph(pipeline.id, graph)
            nodes = await api.pipelines.get_nodes(pipeline.id)
            assert sorted(n.id for n in nodes) == ["lead", "work"]
            edges = await api.pipelines.get_connections(pipeline.id)
            assert [(e.source, e.target) for e in edges] == [("lead", "work")]
            assert (await api.pipelines.get(pipeline.id)).version == 2

            first = await api.deployments.deploy(pipeline.id, "development")
            first = await api.deployments.wait_settled(first.id, timeout=20)
            assert first.status == "active"
            await api.pipelines.update(pipeline.id, {"description": "v3"})
            second = await api.deployments.deploy(pipeline.id, "development")
            second = await api.deployments.wait_settled(second.id, timeout=20)
            assert second.pipeline_version == 3
            rolled = await api.deployments.rollback(second.id)
            rolled = await api.deployments.wait_settled(rolled.id, timeout=20)
            assert rolled.pipeline_version == 2
            promoted = await api.deployments.promote(rolled.id, "production")
            assert promoted.pipeline_version == 2
            assert await api.deployments.logs(first.id)
            await api.deployments.delete(promoted.id)

            policy = await api.policies.create(
                {"name": "p", "effect": "allow", "resource_type": "agent", "actions": ["read"]}
            )
            assert [p.name for p in await api.policies.list_all()] == ["p"]
            await api.policies.delete(policy.id)
            with pytest.raises(ConflictError):
                await api.agents.create(_agent("triage"))
            await api.auth.logout()
        finally:
            await api.aclose()

    run(main())


@pytest.mark.manual_clock
def test_faults_on_creates_make_no_duplicates_and_lists_are_whole(
    server: RunningServer, server_clock: ManualClock
) -> None:
    server.set_faults(
        rate_429=0.15,
        rate_503=0.1,
        retry_after_s=0.01,
        rate_drop_after_commit=0.3,
        access_token_ttl_s=1,
        page_size_cap=3,
        latency_ms=5,
        fault_seed=4,
    )
    names = [f"agent-{n:02d}" for n in range(16)]

    async def main() -> list[str]:
        api = await _open(server, parallelism=6)
        try:
            await asyncio.gather(*(api.agents.create(_agent(name)) for name in names))
            server_clock.advance(1.1)  # outlive the access token: the next calls must refresh
            listed = await api.agents.list_all()
            return [a.name for a in listed]
        finally:
            await api.aclose()

    listed = run(main())
    server.set_faults(rate_429=0, rate_503=0, rate_drop_after_commit=0, page_size_cap=None)
    assert sorted(listed) == names  # every page read, nothing twice

    log = server.request_log()
    creates = [e for e in log if e.method == "POST" and e.path == "/api/v1/agents"]
    committed = [e for e in creates if e.status == 201]
    assert len(committed) == len(names)  # each agent made exactly once
    # A 409 would mean a create was re-sent blindly after its answer was lost.
    assert not [e for e in creates if e.status == 409]
    assert any(e.dropped for e in creates), "no create answer was dropped; the test proves nothing"
    assert any(e.status in (429, 503) for e in log)
    assert any(e.path == "/api/v1/auth/refresh" or e.path == "/api/v1/auth/login" for e in log[2:])


@pytest.mark.manual_clock
def test_one_refresh_for_twenty_concurrent_requests_on_the_server(
    server: RunningServer, server_clock: ManualClock
) -> None:
    server.set_faults(access_token_ttl_s=1)

    async def main() -> None:
        api = await _open(server, parallelism=20)
        try:
            agents = [await api.agents.create(_agent(f"a{n}")) for n in range(20)]
            server_clock.advance(1.2)
            server.clear_request_log()
            await asyncio.gather(*(api.agents.get(a.id) for a in agents))
        finally:
            await api.aclose()

    run(main())
    counts = Counter((e.path, e.status) for e in server.request_log())
    assert counts[("/api/v1/auth/refresh", 200)] == 1
    assert counts[("/api/v1/auth/login", 200)] == 0


def test_lists_follow_total_pages_under_a_page_size_cap(server: RunningServer) -> None:
    server.set_faults(page_size_cap=4)

    async def main() -> int:
        api = await _open(server)
        try:
            for n in range(10):
                await api.agents.create(_agent(f"x{n}"))
            server.clear_request_log()
            return len(await api.agents.list_all())
        finally:
            await api.aclose()

    assert run(main()) == 10
    pages = [e for e in server.request_log() if e.path == "/api/v1/agents"]
    assert len(pages) == 3


def test_deploys_promotes_and_deletes_with_dropped_answers_happen_once(
    server: RunningServer,
) -> None:
    async def main() -> None:
        api = await _open(server)
        try:
            pipeline = await api.pipelines.create({"name": "pipe", "pattern": "parallel"})
            server.set_faults(rate_drop_after_commit=1.0, deploy_step_s=0.02)
            # Every write answer is lost: each must be resolved by looking, not re-sending.
            deployment = await api.deployments.deploy(pipeline.id, "development")
            server.set_faults(rate_drop_after_commit=0)
            active = await api.deployments.wait_settled(deployment.id, timeout=20)
            assert active.status == "active"
            server.set_faults(rate_drop_after_commit=1.0)
            promoted = await api.deployments.promote(active.id, "staging")
            assert promoted.environment == "staging"
            agent = await api.agents.create(_agent("lonely"))
            await api.agents.delete(agent.id)
            server.set_faults(rate_drop_after_commit=0)
            every = await api.deployments.list_all(pipeline_id=pipeline.id)
            assert Counter(d.environment for d in every) == {"development": 1, "staging": 1}
            assert await api.agents.list_all() == []
        finally:
            await api.aclose()

    run(main())
    dropped = [e for e in server.request_log() if e.dropped]
    assert {e.method for e in dropped} >= {"POST", "DELETE"}


def test_a_503_after_a_committed_write_is_looked_up_not_sent_again(
    server: RunningServer,
) -> None:
    # CONTRACT.md: a 503 may have taken effect. Every write below commits and is then
    # answered 503; a client that re-posts meets 409 (or deploys and promotes twice).
    async def main() -> None:
        api = await _open(server)
        try:
            pipeline = await api.pipelines.create({"name": "pipe", "pattern": "parallel"})
            server.set_faults(rate_503_after_commit=1.0, retry_after_s=0.01)
            agent = await api.agents.create(_agent("refunds"))
            assert agent.name == "refunds"
            deployment = await api.deployments.deploy(pipeline.id, "development")
            server.set_faults(rate_503_after_commit=0)
            active = await api.deployments.wait_settled(deployment.id, timeout=20)
            server.set_faults(rate_503_after_commit=1.0)
            promoted = await api.deployments.promote(active.id, "staging")
            assert promoted.environment == "staging"
            server.set_faults(rate_503_after_commit=0)
            assert [a.name for a in await api.agents.list_all()] == ["refunds"]
        finally:
            await api.aclose()

    run(main())
    log = server.request_log()
    writes = [e for e in log if e.method == "POST" and "/auth/" not in e.path]
    by_path = Counter(e.path for e in writes)
    assert by_path["/api/v1/agents"] == 1
    assert by_path["/api/v1/deployments"] == 1
    assert sum(1 for e in writes if e.path.endswith("/promote")) == 1
    assert not [e for e in log if e.status == 409]
    # The fault really fired on each: committed, then answered 503.
    assert [e.replaced_with for e in writes[1:]] == [503, 503, 503]


@pytest.mark.manual_clock
def test_429_waits_that_outlive_the_token_neither_exhaust_attempts_nor_fail_on_401(
    server: RunningServer, server_clock: ManualClock
) -> None:
    # The client's waits move the server's clock: nine 1 s Retry-After waits (more than
    # the 8 attempts) outlive a 1 s token, whose 401 must then be cured by a renewal.
    rate_limited_waits = 9

    async def sleep_then_relent(seconds: float) -> None:
        await server_clock.sleep(seconds)
        if len(server_clock.sleeps) == rate_limited_waits:
            server.set_faults(rate_429=0)

    policy = RetryPolicy(sleep=sleep_then_relent, clock=server_clock, random=lambda: 0.5)
    assert policy.max_attempts < rate_limited_waits + 1

    server.set_faults(access_token_ttl_s=1)

    async def main() -> str:
        api = await connect_v1(_settings(server), policy=policy)
        try:
            server.set_faults(rate_429=1.0, retry_after_s=1)
            server.clear_request_log()
            return (await api.agents.create(_agent("paced"))).name
        finally:
            await api.aclose()

    assert run(main()) == "paced"
    assert server_clock.sleeps == [1.0] * rate_limited_waits
    statuses = [(e.path, e.status) for e in server.request_log()]
    assert statuses.count(("/api/v1/agents", 429)) == rate_limited_waits
    assert ("/api/v1/agents", 401) in statuses  # the token did expire while waiting
    assert statuses[-1] == ("/api/v1/agents", 201)


@pytest.mark.manual_clock
def test_no_secret_leaks_through_login_refresh_and_error_against_the_server(
    server: RunningServer, server_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_faults(access_token_ttl_s=1)
    stream = io.StringIO()
    configure_logging(3, stream)
    caplog.set_level(logging.DEBUG)
    seen_tokens: set[str] = set()
    errors: list[str] = []

    async def main() -> None:
        api = await _open(server)
        try:
            seen_tokens.update(_tokens(api))
            await api.agents.create(_agent("dup"))
            server_clock.advance(1.1)
            try:
                await api.agents.create(_agent("dup"))  # 401 -> refresh -> 409
            except ConflictError as exc:
                errors.extend([str(exc), repr(exc)])
            seen_tokens.update(_tokens(api))
        finally:
            await api.aclose()

    try:
        run(main())
    finally:
        configure_logging(0, io.StringIO())
    output = "\n".join([stream.getvalue(), caplog.text, *errors])
    assert "POST /api/v1/auth/refresh 200" in output
    assert "answered 409" in output
    assert len(seen_tokens) == 4
    for secret in {server.password, *seen_tokens}:
        assert secret not in output


def _tokens(api: ContractV1Api) -> set[str]:
    tokens = api.session.tokens
    return {t for t in (tokens.access_token, tokens.refresh_token) if t}
