"""Fault knobs, the request log, concurrency and persistence."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kaizenctl.server.testing import RunningServer, running_server

Make = Callable[..., dict[str, Any]]


def test_knobs_off_by_default(server: RunningServer) -> None:
    knobs = server.faults()
    assert knobs["latency_ms"] == 0
    assert knobs["rate_429"] == knobs["rate_503"] == knobs["rate_drop_after_commit"] == 0
    assert knobs["rate_503_after_commit"] == 0
    assert knobs["page_size_cap"] is None
    assert knobs["deploy_step_s"] == 0


def test_admin_rejects_bad_knobs(server: RunningServer) -> None:
    assert httpx.put(f"{server.url}/admin/faults", json={"rate_429": 2}).status_code == 422
    assert httpx.put(f"{server.url}/admin/faults", json={"nope": 1}).status_code == 422


def test_429_before_processing(server: RunningServer, api: httpx.Client) -> None:
    server.set_faults(rate_429=1.0, retry_after_s=0.05)
    response = api.post(
        "/agents", json={"name": "a", "system_prompt": "p", "provider": "openai", "model": "m"}
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0.05"
    assert isinstance(response.json()["detail"], str)
    server.set_faults(rate_429=0.0)
    assert api.get("/agents").json()["total"] == 0  # no side effect


def test_503_with_retry_after(server: RunningServer, api: httpx.Client) -> None:
    server.set_faults(rate_503=1.0)
    response = api.get("/agents")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    # Faults never touch the admin endpoint.
    assert httpx.get(f"{server.url}/admin/faults").status_code == 200


def test_drop_after_commit(server: RunningServer, api: httpx.Client) -> None:
    server.set_faults(rate_drop_after_commit=1.0)
    assert api.get("/agents").status_code == 200  # reads are never dropped
    with pytest.raises(httpx.TransportError):
        api.post(
            "/agents", json={"name": "a", "system_prompt": "p", "provider": "openai", "model": "m"}
        )
    server.set_faults(rate_drop_after_commit=0.0)
    assert api.get("/agents").json()["total"] == 1  # committed
    entry = server.request_log()[-2]
    assert (entry.method, entry.path, entry.status, entry.dropped) == (
        "POST",
        "/api/v1/agents",
        201,
        True,
    )


def test_503_after_commit(server: RunningServer, api: httpx.Client) -> None:
    server.set_faults(rate_503_after_commit=1.0, retry_after_s=2)
    assert api.get("/agents").status_code == 200  # reads are never faulted after commit
    body = {"name": "a", "system_prompt": "p", "provider": "openai", "model": "m"}
    response = api.post("/agents", json=body)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    refused = api.post("/agents", json={**body, "provider": "nope"})
    assert refused.status_code == 422  # a refused write committed nothing: answered as usual
    server.set_faults(rate_503_after_commit=0.0)
    assert [a["name"] for a in api.get("/agents").json()["items"]] == ["a"]  # committed
    created, invalid = server.request_log()[-3:-1]
    assert (created.method, created.status, created.replaced_with) == ("POST", 201, 503)
    assert not created.dropped
    assert (invalid.status, invalid.replaced_with) == (422, None)


def test_seeded_faults_reproducible() -> None:
    def statuses() -> list[int]:
        with running_server(rate_503=0.5, fault_seed=7) as live:
            return [httpx.get(f"{live.url}/api/v1/agents").status_code for _ in range(12)]

    first = statuses()
    assert set(first) == {401, 503}
    assert statuses() == first


def test_latency(server: RunningServer, api: httpx.Client) -> None:
    server.set_faults(latency_ms=150)
    started = time.monotonic()
    api.get("/agents")
    assert time.monotonic() - started >= 0.15


def test_request_log(server: RunningServer, api: httpx.Client) -> None:
    server.clear_request_log()
    api.get("/agents", params={"page": 1})
    api.get("/agents/nope")
    entries = server.request_log()
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("GET", "/api/v1/agents", 200),
        ("GET", "/api/v1/agents/nope", 404),
    ]
    server.clear_request_log()
    assert server.request_log() == []


def test_concurrent_writes_keep_rules(
    make_agent: Make, make_pipeline: Make, api: httpx.Client
) -> None:
    agent, pipeline = make_agent(), make_pipeline()
    results: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        with httpx.Client(base_url=str(api.base_url), headers=dict(api.headers)) as client:
            codes = [
                client.post(
                    "/policies",
                    json={"name": "dup", "effect": "allow", "resource_type": "a", "actions": ["r"]},
                ).status_code,
                client.post(
                    "/deployments",
                    json={"pipeline_id": pipeline["id"], "environment": "production"},
                ).status_code,
                client.put(
                    f"/pipelines/{pipeline['id']}/nodes",
                    json={
                        "nodes": [
                            {"id": f"n{index}-{k}", "node_type": "agent", "agent_id": agent["id"]}
                            for k in range(5)
                        ],
                        "edges": [
                            {"source_node_id": f"n{index}-0", "target_node_id": f"n{index}-{k}"}
                            for k in range(1, 5)
                        ],
                    },
                ).status_code,
            ]
        with lock:
            results.extend(codes)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(409) == 7
    assert api.get("/policies").json()["total"] == 1
    nodes = api.get(f"/pipelines/{pipeline['id']}/nodes").json()
    assert len(nodes) == 5
    assert len({n["id"].split("-")[0] for n in nodes}) == 1  # one whole graph, not a mix
    assert len(api.get(f"/pipelines/{pipeline['id']}/connections").json()) == 4
    active = api.get(
        "/deployments", params={"status": "active", "environment": "production"}
    ).json()
    assert active["total"] == 1


def test_state_survives_restart_with_db(tmp_path: Path) -> None:
    db = str(tmp_path / "kaizen.db")
    with running_server(db_path=db) as first:
        form = {"username": first.email, "password": first.password}
        tokens = httpx.post(f"{first.url}/api/v1/auth/login", data=form).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        body = {"name": "kept", "pattern": "x"}
        assert (
            httpx.post(f"{first.url}/api/v1/pipelines", json=body, headers=headers).status_code
            == 201
        )
    with running_server(db_path=db) as second:
        # The signing secret is persisted: the old access token still works.
        listed = httpx.get(f"{second.url}/api/v1/pipelines", headers=headers).json()
        assert [p["name"] for p in listed["items"]] == ["kept"]
