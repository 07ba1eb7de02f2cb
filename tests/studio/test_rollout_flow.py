"""The issue's done-when flow in CI, over HTTP: the reference server for agents, the
rollout fake for gateways, deployments and promotions, and three gateway stubs.

Development deploys, staging is promoted at once, production waits for approval
(never executed by kaizenctl), the next apply after the approval completes it, a
changed agent moves along the chain in one apply except where approval stops it,
a deployment stopped by hand is restored, an extra active one is stopped, and
the final plan has no changes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kaizenctl.api.gateways import StudioRollout
from kaizenctl.api.session import ApiSession, TokenState
from kaizenctl.reconcile import ApplyOptions, PlanOptions
from kaizenctl.reconcile.apply import ApplyResult
from kaizenctl.render import render_apply, render_plan
from tests.studio.harness import GATEWAY_NAMES, KEY_VARIABLES, KEYS, Studio, agent_manifest, studio


@pytest.fixture
def s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Studio]:
    with studio(tmp_path / "manifests", monkeypatch) as running:
        yield running


def _statuses(result: ApplyResult) -> dict[str, str]:
    return {o.summary.split(" (")[0]: o.status for o in result.outcomes}


def _active_by_gateway(s: Studio) -> dict[str, list[dict[str, Any]]]:
    names = {g["id"]: g["name"] for g in s.fake.state.gateways.values()}
    found: dict[str, list[dict[str, Any]]] = {}
    for deployment in s.fake.active():
        found.setdefault(names[deployment["gateway_id"]], []).append(deployment)
    return found


def _pending(s: Studio) -> list[dict[str, Any]]:
    return [
        p
        for p in s.fake.state.promotions.values()
        if p["status"] == "pending" and p["requires_approval"]
    ]


def _approve_all(s: Studio) -> None:
    for promotion in _pending(s):
        s.fake.approve(promotion["id"])


def test_the_chain_waits_for_approval_then_converges(s: Studio) -> None:
    plan, result = s.apply()

    # Gateways first (their keys sent as Bearer by the platform), then the chain.
    outcomes = {o.ref: o.status for o in result.outcomes}
    assert outcomes["Deployment/helper/development"] == "done"
    assert outcomes["Deployment/helper/staging"] == "done"
    assert outcomes["Deployment/helper/production"] == "awaiting-approval"
    assert result.awaiting_approval
    assert not result.ok
    production = next(a for a in plan.actions if a.name == "helper/production")
    assert any("waits for approval" in w for w in production.warnings)
    # Nothing was ever executed around the approvers.
    assert s.fake.state.executed == []
    active = _active_by_gateway(s)
    assert sorted(active) == ["dev-gw", "staging-gw"]
    for env in ("development", "staging"):
        registrations = s.stubs[env].requests_to("POST", "/api/v1/agents/register")
        assert [r.authorization for r in registrations] == [f"Bearer {KEYS[env]}"]
        assert registrations[0].body["config"] == "You help customers."
    assert s.stubs["production"].requests == []
    # The key never shows, in any format.
    for text in (render_plan(plan, "text"), render_plan(plan, "json"), render_apply(result)):
        assert all(key not in text for key in KEYS.values())

    # Apply again before anyone approves: the same promotion still waits, no second one.
    promotions_before = len(s.fake.state.promotions)
    plan, result = s.apply()
    assert [a.name for a in plan.actions] == ["helper/production"]
    assert "awaits approval" in plan.actions[0].summary
    assert [o.status for o in result.outcomes] == ["awaiting-approval"]
    assert len(s.fake.state.promotions) == promotions_before
    assert s.fake.state.executed == []

    # Approved on the platform (which carries it out): the next apply has nothing left.
    _approve_all(s)
    plan = s.plan()
    assert plan.actions == (), [a.summary for a in plan.actions]
    active = _active_by_gateway(s)
    assert {name: len(found) for name, found in active.items()} == {
        "dev-gw": 1,
        "staging-gw": 1,
        "prod-gw": 1,
    }
    # One agent version, carried from development to production.
    assert len({d["agent_version_id"] for found in active.values() for d in found}) == 1


def _converge(s: Studio) -> None:
    s.apply()
    _approve_all(s)
    assert s.plan().actions == ()


def test_a_changed_agent_moves_along_the_chain_in_one_apply_except_where_approval_stops_it(
    s: Studio,
) -> None:
    _converge(s)
    old = {name: found[0]["id"] for name, found in _active_by_gateway(s).items()}
    s.write("agent.yaml", agent_manifest("You help customers, kindly."))

    plan, result = s.apply()

    assert [a.verb for a in plan.actions if a.kind == "Deployment"] == [
        "deploy",
        "promote",
        "promote",
    ]
    statuses = {o.ref: o.status for o in result.outcomes}
    assert statuses["Agent/helper"] == "done"
    assert statuses["Deployment/helper/development"] == "done"
    assert statuses["Deployment/helper/staging"] == "done"
    assert statuses["Deployment/helper/production"] == "awaiting-approval"
    active = _active_by_gateway(s)
    # Development and staging run the new version and only it; production still the old one.
    assert old["dev-gw"] not in [d["id"] for d in active["dev-gw"]]
    assert len(active["dev-gw"]) == len(active["staging-gw"]) == 1
    assert [d["id"] for d in active["prod-gw"]] == [old["prod-gw"]]
    staging_body = s.stubs["staging"].requests_to("POST", "/api/v1/agents/register")[-1].body
    assert staging_body["config"] == "You help customers, kindly."
    # The replaced registrations were removed from the gateways.
    assert len(s.stubs["development"].requests_to("DELETE")) == 1

    _approve_all(s)
    plan, result = s.apply()
    # The approved promotion made a second active deployment in production: the old one goes.
    assert [a.verb for a in plan.actions] == ["stop"]
    assert result.ok
    assert {name: len(found) for name, found in _active_by_gateway(s).items()} == {
        "dev-gw": 1,
        "staging-gw": 1,
        "prod-gw": 1,
    }
    assert s.plan().actions == ()
    assert s.fake.state.executed == []


def test_a_deployment_stopped_by_hand_is_drift_and_is_restored(s: Studio) -> None:
    _converge(s)
    staging = _active_by_gateway(s)["staging-gw"][0]
    s.fake.stop_by_hand(staging["id"])

    plan = s.plan()
    assert [(a.verb, a.name) for a in plan.actions] == [("promote", "helper/staging")]
    drift = json.loads(render_plan(plan, "json"))["drift"]
    assert drift["drifted"] is True
    _, result = s.apply()
    assert result.ok
    assert len(_active_by_gateway(s)["staging-gw"]) == 1
    assert s.plan().actions == ()


def test_an_extra_active_deployment_is_stopped_and_reported_as_drift(s: Studio) -> None:
    _converge(s)
    dev = s.fake.gateway_named(GATEWAY_NAMES["development"])
    extra = s.fake.deploy_by_hand(s.agent_id(), dev["id"])

    plan = s.plan()
    stops = [a for a in plan.actions if a.verb == "stop"]
    assert [a.live_id for a in stops] == [extra["id"]]
    assert json.loads(render_plan(plan, "json"))["drift"]["resources"][0]["how"] == [
        "extra-deployment"
    ]
    _, result = s.apply()
    assert result.ok
    assert len(_active_by_gateway(s)["dev-gw"]) == 1
    assert s.plan().actions == ()


def test_a_rejected_promotion_is_reported_as_rejected_until_the_source_moves(s: Studio) -> None:
    s.apply()
    (pending,) = _pending(s)
    s.fake.reject(pending["id"], "not this week")

    plan, result = s.apply()
    assert [o.status for o in result.outcomes] == ["rejected"]
    assert "not this week" in result.outcomes[0].message
    assert "was rejected" in plan.actions[0].summary
    assert not result.awaiting_approval
    assert "Rejected by the platform's approvers (1):" in render_apply(result)
    # It does not ask again for the same source.
    assert _pending(s) == []

    # A new agent change is a new source: a new promotion is asked for.
    s.write("agent.yaml", agent_manifest("Second try."))
    _, result = s.apply()
    assert {o.ref: o.status for o in result.outcomes}["Deployment/helper/production"] == (
        "awaiting-approval"
    )
    assert len(_pending(s)) == 1


def test_a_failed_deploy_shows_its_error_and_logs_in_time_order_and_skips_what_depends_on_it(
    s: Studio,
) -> None:
    s.write(
        "gateways.yaml",
        (s.folder / "gateways.yaml")
        .read_text()
        .replace(s.stubs["development"].url, "http://127.0.0.1:9"),
    )
    _, result = s.apply()
    outcomes = {o.ref: o for o in result.outcomes}
    failed = outcomes["Deployment/helper/development"]
    assert failed.status == "failed"
    assert "All connection attempts failed" in failed.message
    events = [
        line.split()[1].rstrip(":")
        for line in failed.message.splitlines()
        if line.startswith("    ")
    ]
    assert events == ["started", "building", "failed"]
    assert outcomes["Deployment/helper/staging"].status == "skipped"
    assert outcomes["Deployment/helper/production"].status == "skipped"
    assert s.fake.state.promotions == {}


def test_the_gateway_key_is_resent_only_when_it_changes(
    s: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    _converge(s)
    assert not [w for w in s.fake.writes() if w[0] == "PUT"]

    monkeypatch.setenv(KEY_VARIABLES["staging"], "rotated-staging-key-9876")
    plan = s.plan()
    (update,) = plan.actions
    assert (update.verb, update.name) == ("update", "staging-gw")
    assert [(c.field, c.sensitive) for c in update.changes] == [("api_key", True)]
    assert "rotated-staging-key-9876" not in render_plan(plan, "json")
    _, result = s.apply()
    assert result.ok
    staging = s.fake.gateway_named("staging-gw")
    assert s.fake.state.keys[staging["id"]] == "rotated-staging-key-9876"
    # The stamp kaizenctl keeps is a salted digest, never the key.
    assert "rotated-staging-key-9876" not in staging["description"]
    assert s.plan().actions == ()


def test_prune_stops_what_no_manifest_describes_with_the_production_guard(s: Studio) -> None:
    _converge(s)
    s.write(
        "deployments.yaml",
        (s.folder / "deployments.yaml").read_text().split("---\n")[0],
    )
    plan = s.plan(prune=True)
    deletes = {a.name: a for a in plan.actions if a.verb == "delete"}
    assert sorted(deletes) == ["helper/production@prod-gw", "helper/staging@staging-gw"]
    assert deletes["helper/production@prod-gw"].requires_flag == "--allow-production-delete"
    with pytest.raises(Exception, match="allow-production-delete"):
        s.apply(PlanOptions(prune=True))
    assert len(s.fake.active()) == 3
    _, result = s.apply(
        PlanOptions(prune=True),
        ApplyOptions(allowed_flags=frozenset({"--allow-production-delete"})),
    )
    assert result.ok
    assert sorted(_active_by_gateway(s)) == ["dev-gw"]
    assert s.stubs["production"].requests_to("DELETE")


def test_apply_exits_3_while_a_promotion_awaits_approval(
    s: Studio, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import kaizenctl.api.connect as connect
    from kaizenctl.cli import main

    original = connect.open_api

    @asynccontextmanager
    async def with_rollout(settings: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with original(settings, **kwargs) as api:
            session = ApiSession(s.fake.api_url, tokens=TokenState("fake-token"))
            setattr(api, "rollout", StudioRollout(session))  # noqa: B010
            try:
                yield api
            finally:
                await session.aclose()

    monkeypatch.setattr(connect, "open_api", with_rollout)
    monkeypatch.setenv("KAIZEN_API_URL", s.server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", s.server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", s.server.password)
    monkeypatch.delenv("KAIZEN_TOKEN", raising=False)

    assert main(["apply", "--auto-approve", str(s.folder)]) == 3
    out = capsys.readouterr().out
    assert "Awaiting approval on the platform (neither done nor failed" in out
    assert "Apply awaiting approval" in out
    _approve_all(s)
    assert main(["plan", "--detailed-exitcode", str(s.folder)]) == 0


def test_a_saved_plan_keeps_no_gateway_key_and_is_refused_once_deployments_moved(
    s: Studio, tmp_path: Path
) -> None:
    from kaizenctl.api.service import KaizenApi
    from kaizenctl.errors import PlanError
    from kaizenctl.gitops.saved_plan import load_saved_plan, save_plan
    from kaizenctl.manifests.loader import load_manifests
    from kaizenctl.reconcile import apply_plan_async, plan_async
    from kaizenctl.reconcile.plan import (
        AgentDeployPayload,
        AgentPromotePayload,
        CreatePayload,
        Plan,
    )

    resources = list(load_manifests([str(s.folder)]).resources)
    plan_file = tmp_path / "plan.json"
    planned: list[Plan] = []

    async def save(api: KaizenApi) -> None:
        plan, live = await plan_async(api, resources)
        planned.append(plan)
        await save_plan(api, plan_file, plan, live, resources)

    s.with_api(save)
    text = plan_file.read_text()
    assert all(key not in text for key in KEYS.values())
    assert "${KAIZENCTL_TEST_PRODUCTION_GW_KEY}" in text

    async def apply_saved(api: KaizenApi) -> ApplyResult:
        plan, live = await load_saved_plan(api, plan_file)
        # The typed plan comes back as it was made, the gateway keys restored from the
        # environment.
        assert plan == planned[-1]
        kinds = {type(a.payload) for a in plan.actions}
        assert {CreatePayload, AgentDeployPayload, AgentPromotePayload} <= kinds
        return await apply_plan_async(api, plan, live)

    result = s.with_api(apply_saved)
    assert result.awaiting_approval
    # The keys were restored from the environment for the creates.
    prod = s.fake.gateway_named("prod-gw")
    assert s.fake.state.keys[prod["id"]] == KEYS["production"]

    s.with_api(save)
    dev = s.fake.gateway_named("dev-gw")
    s.fake.deploy_by_hand(s.agent_id(), dev["id"])
    with pytest.raises(PlanError, match="Deployment/@agents-on-gateways: changed"):
        s.with_api(lambda api: load_saved_plan(api, plan_file))


def test_a_saved_plan_that_resends_a_gateway_key_is_shown_masked_and_applied_with_the_key(
    s: Studio,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kaizenctl.api.service import KaizenApi
    from kaizenctl.cli import main
    from kaizenctl.gitops.saved_plan import load_saved_plan, save_plan
    from kaizenctl.manifests.loader import load_manifests
    from kaizenctl.reconcile import apply_plan_async, plan_async
    from kaizenctl.reconcile.plan import GatewayUpdatePayload

    _converge(s)
    rotated = "rotated-staging-key-9876"
    monkeypatch.setenv(KEY_VARIABLES["staging"], rotated)
    resources = list(load_manifests([str(s.folder)]).resources)
    plan_file = tmp_path / "plan.json"

    async def save(api: KaizenApi) -> None:
        plan, live = await plan_async(api, resources)
        (update,) = plan.actions
        assert isinstance(update.payload, GatewayUpdatePayload)
        assert update.payload.api_key == rotated
        await save_plan(api, plan_file, plan, live, resources)

    s.with_api(save)
    assert rotated not in plan_file.read_text()
    capsys.readouterr()
    # `show` reads the file as it is, the key still a placeholder.
    assert main(["show", str(plan_file)]) == 0
    shown = capsys.readouterr().out
    assert "~ update Gateway/staging-gw" in shown
    assert rotated not in shown

    async def apply_saved(api: KaizenApi) -> ApplyResult:
        plan, live = await load_saved_plan(api, plan_file)
        return await apply_plan_async(api, plan, live)

    assert s.with_api(apply_saved).ok
    staging = s.fake.gateway_named("staging-gw")
    assert s.fake.state.keys[staging["id"]] == rotated
