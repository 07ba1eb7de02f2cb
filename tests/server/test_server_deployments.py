"""Deployments: deploy, the life cycle, promote, rollback, delete, logs, 409 rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kaizenctl.server.testing import ManualClock, RunningServer

Make = Callable[..., dict[str, Any]]


def deploy(
    api: httpx.Client, pipeline_id: str, environment: str = "development", **extra: Any
) -> dict[str, Any]:
    response = api.post(
        "/deployments", json={"pipeline_id": pipeline_id, "environment": environment, **extra}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def status(api: httpx.Client, deployment_id: str) -> str:
    value: str = api.get(f"/deployments/{deployment_id}").json()["status"]
    return value


def test_deploy_life_cycle_default_step(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    created = deploy(api, pipeline["id"], config={"replicas": 2})
    assert created["status"] == "pending"
    assert created["pipeline_version"] == 1
    assert created["environment"] == "development"
    assert created["config"] == {"replicas": 2}
    assert created["gateway_id"]
    assert status(api, created["id"]) == "active"
    logs = api.get(f"/deployments/{created['id']}/logs").json()
    assert [entry["level"] for entry in logs] == ["info", "info", "info"]
    assert logs == sorted(logs, key=lambda entry: entry["timestamp"])


def test_deploy_uses_current_version(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    api.patch(f"/pipelines/{pipeline['id']}", json={"pattern": "router"})
    assert deploy(api, pipeline["id"])["pipeline_version"] == 2


@pytest.mark.manual_clock
def test_deploy_step_timing(
    server: RunningServer, server_clock: ManualClock, make_pipeline: Make, api: httpx.Client
) -> None:
    server.set_faults(deploy_step_s=0.3)
    created = deploy(api, make_pipeline()["id"])
    server_clock.advance(0.29)
    assert status(api, created["id"]) == "pending"
    server_clock.advance(0.02)  # past one step
    assert status(api, created["id"]) == "deploying"
    server_clock.advance(0.27)
    assert status(api, created["id"]) == "deploying"
    server_clock.advance(0.04)  # past two steps
    assert status(api, created["id"]) == "active"


def test_deploy_422(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    bad_env = api.post("/deployments", json={"pipeline_id": pipeline["id"], "environment": "qa"})
    assert bad_env.status_code == 422
    missing = api.post("/deployments", json={"pipeline_id": "nope", "environment": "staging"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "pipeline_id"]
    extra = api.post(
        "/deployments",
        json={"pipeline_id": pipeline["id"], "environment": "staging", "status": "active"},
    )
    assert extra.status_code == 422


def test_one_active_per_pipeline_and_environment(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    first = deploy(api, pipeline["id"])
    assert status(api, first["id"]) == "active"
    other_env = deploy(api, pipeline["id"], "staging")
    second = deploy(api, pipeline["id"])
    assert status(api, second["id"]) == "active"
    assert status(api, first["id"]) == "stopped"
    assert status(api, other_env["id"]) == "active"
    gateways = {d["environment"]: d["gateway_id"] for d in (first, second, other_env)}
    assert first["gateway_id"] == second["gateway_id"] == gateways["development"]
    assert gateways["staging"] != gateways["development"]
    active = api.get(
        "/deployments", params={"status": "active", "environment": "development"}
    ).json()
    assert [d["id"] for d in active["items"]] == [second["id"]]


def test_new_deployment_cancels_unsettled_one(
    server: RunningServer, make_pipeline: Make, api: httpx.Client
) -> None:
    server.set_faults(deploy_step_s=5)
    pipeline = make_pipeline()
    first = deploy(api, pipeline["id"])
    second = deploy(api, pipeline["id"])
    assert status(api, first["id"]) == "stopped"
    assert status(api, second["id"]) == "pending"


def test_failure_on_demand_keeps_previous(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    good = deploy(api, pipeline["id"])
    assert status(api, good["id"]) == "active"
    api.patch(f"/pipelines/{pipeline['id']}", json={"config": {"simulate_deploy_failure": True}})
    bad = deploy(api, pipeline["id"])
    assert status(api, bad["id"]) == "failed"
    assert status(api, good["id"]) == "active"
    logs = api.get(f"/deployments/{bad['id']}/logs").json()
    assert logs[-1]["level"] == "error"
    assert "simulate_deploy_failure" in logs[-1]["message"]


def test_promote_needs_active_source(
    server: RunningServer, make_pipeline: Make, api: httpx.Client
) -> None:
    server.set_faults(deploy_step_s=5)
    pending = deploy(api, make_pipeline()["id"])
    response = api.post(
        f"/deployments/{pending['id']}/promote", json={"target_environment": "staging"}
    )
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    assert api.post(f"/deployments/{pending['id']}/rollback").status_code == 409


def test_promote(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    dev = deploy(api, pipeline["id"], config={"c": 1})
    assert status(api, dev["id"]) == "active"
    api.patch(f"/pipelines/{pipeline['id']}", json={"pattern": "router"})
    promoted = api.post(f"/deployments/{dev['id']}/promote", json={"target_environment": "staging"})
    assert promoted.status_code == 201
    body = promoted.json()
    assert body["environment"] == "staging"
    assert body["pipeline_version"] == 1  # what ran in development, not the current version
    assert body["config"] == {"c": 1}
    assert body["id"] != dev["id"]
    # Backwards or sideways: 409. Development straight to production is fine.
    assert status(api, body["id"]) == "active"
    for target in ("development", "staging"):
        response = api.post(
            f"/deployments/{body['id']}/promote", json={"target_environment": target}
        )
        assert response.status_code == 409
    to_prod = api.post(
        f"/deployments/{dev['id']}/promote", json={"target_environment": "production"}
    )
    assert to_prod.status_code == 201
    assert (
        api.post(
            f"/deployments/{dev['id']}/promote", json={"target_environment": "moon"}
        ).status_code
        == 422
    )
    assert (
        api.post("/deployments/nope/promote", json={"target_environment": "staging"}).status_code
        == 404
    )


def test_rollback(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    first = deploy(api, pipeline["id"], config={"gen": 1})
    assert status(api, first["id"]) == "active"
    # Replaced nothing: 409.
    assert api.post(f"/deployments/{first['id']}/rollback").status_code == 409
    api.patch(f"/pipelines/{pipeline['id']}", json={"pattern": "router"})
    second = deploy(api, pipeline["id"], config={"gen": 2})
    assert status(api, second["id"]) == "active"
    assert second["pipeline_version"] == 2
    rolled = api.post(f"/deployments/{second['id']}/rollback")
    assert rolled.status_code == 201
    body = rolled.json()
    assert body["pipeline_version"] == 1
    assert body["config"] == {"gen": 1}
    assert body["environment"] == "development"
    assert status(api, body["id"]) == "active"
    assert status(api, second["id"]) == "stopped"
    # Source not active any more: 409.
    assert api.post(f"/deployments/{second['id']}/rollback").status_code == 409
    assert api.post("/deployments/nope/rollback").status_code == 404


def test_delete_stops_and_is_idempotent(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    created = deploy(api, pipeline["id"])
    assert api.delete(f"/deployments/{created['id']}").status_code == 204
    assert status(api, created["id"]) == "stopped"
    assert api.delete(f"/deployments/{created['id']}").status_code == 204
    assert api.delete("/deployments/nope").status_code == 404
    assert api.get("/deployments/nope").status_code == 404
    assert api.get("/deployments/nope/logs").status_code == 404


def test_pipeline_delete_409_while_live(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    created = deploy(api, pipeline["id"])
    assert api.delete(f"/pipelines/{pipeline['id']}").status_code == 409  # pending
    assert status(api, created["id"]) == "active"
    assert api.delete(f"/pipelines/{pipeline['id']}").status_code == 409  # active
    api.delete(f"/deployments/{created['id']}")
    assert api.delete(f"/pipelines/{pipeline['id']}").status_code == 204
    # Stopped deployments stay listed.
    listed = api.get("/deployments", params={"pipeline_id": pipeline["id"]}).json()
    assert [d["id"] for d in listed["items"]] == [created["id"]]


def test_deployments_other_org_404(
    make_pipeline: Make, api: httpx.Client, other_org: httpx.Client
) -> None:
    created = deploy(api, make_pipeline()["id"])
    for response in (
        other_org.get(f"/deployments/{created['id']}"),
        other_org.get(f"/deployments/{created['id']}/logs"),
        other_org.delete(f"/deployments/{created['id']}"),
        other_org.post(f"/deployments/{created['id']}/rollback"),
        other_org.post(
            f"/deployments/{created['id']}/promote", json={"target_environment": "staging"}
        ),
    ):
        assert response.status_code == 404
    assert other_org.get("/deployments").json()["total"] == 0
    assert status(api, created["id"]) == "active"


@pytest.mark.parametrize(
    "params",
    [{"environment": "qa"}, {"status": "running"}, {"sort_by": "name"}, {"sort_by": "pipeline_id"}],
)
def test_deployment_list_filters_422(api: httpx.Client, params: dict[str, str]) -> None:
    assert api.get("/deployments", params=params).status_code == 422


def test_deployment_list_ignores_search(make_pipeline: Make, api: httpx.Client) -> None:
    deploy(api, make_pipeline()["id"])
    assert api.get("/deployments", params={"search": "zzz"}).json()["total"] == 1
