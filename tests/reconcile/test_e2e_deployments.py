"""Deployments end to end: promotion chains, failures, rollbacks, drift (issue 6)."""

from __future__ import annotations

import pytest

from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import ApplyError, PlanError
from kaizenctl.reconcile import ApplyOptions, ApplyResult, Plan, apply_plan_async, plan_async
from kaizenctl.reconcile.diff import ALLOW_PRODUCTION_ROLLBACK
from kaizenctl.reconcile.plan import SlotPayload
from tests.reconcile.harness import Kaizen


def _running(kaizen: Kaizen, pipeline: str) -> dict[str, int]:
    """environment -> pipeline_version of the active deployment."""

    async def read(api: KaizenApi) -> dict[str, int]:
        pipeline_id = next(p.id for p in await api.pipelines.list_all() if p.name == pipeline)
        active = await api.deployments.list_all(pipeline_id=pipeline_id, status="active")
        return {d.environment: d.pipeline_version for d in active}

    return kaizen.with_api(read)


def test_a_pipeline_change_is_carried_through_all_three_environments_in_order(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()
    assert _running(kaizen, "support") == {"development": 2, "staging": 2, "production": 2}
    kaizen.edit("pipelines/support.yaml", "max_rounds: 3", "max_rounds: 4")
    kaizen.server.clear_request_log()

    plan, result = kaizen.apply()

    assert [a.summary for a in plan.actions if a.kind == "Deployment"] == [
        "Deployment/support-dev: support in development v2 → v3 (deploy)",
        "Deployment/support-staging: support in staging v2 → v3 (promote from development)",
        "Deployment/support-prod: support in production v2 → v3 (promote from staging)",
    ]
    assert result.ok, result.outcomes
    assert _running(kaizen, "support") == {"development": 3, "staging": 3, "production": 3}
    calls = [(e.method, e.path) for e in kaizen.server.request_log()]
    deploy = calls.index(("POST", "/api/v1/deployments"))
    promotes = [i for i, (m, p) in enumerate(calls) if m == "POST" and p.endswith("/promote")]
    assert len(promotes) == 2
    assert deploy < promotes[0] < promotes[1]
    # Each promotion waited for its source to settle: a status read sits between them.
    between = calls[deploy + 1 : promotes[0]]
    assert any(m == "GET" and p.startswith("/api/v1/deployments/") for m, p in between)
    assert not kaizen.plan().has_changes


def test_a_failed_deploy_in_staging_stops_the_promotion_to_production(kaizen: Kaizen) -> None:
    kaizen.apply()
    kaizen.edit(
        "pipelines/support.yaml",
        "    max_rounds: 3\n",
        "    max_rounds: 3\n    simulate_deploy_failure: [staging]\n",
    )

    _, result = kaizen.apply()

    outcomes = {o.action_id: o for o in result.outcomes}
    assert outcomes["deploy:Deployment/support/development"].status == "done"
    staging = outcomes["promote:Deployment/support/staging"]
    assert staging.status == "failed"
    assert "ended failed" in staging.message
    assert "simulate_deploy_failure" in staging.message  # the last log lines say why
    production = outcomes["promote:Deployment/support/production"]
    assert production.status == "skipped"
    assert "promote:Deployment/support/staging" in production.message
    # A failed deployment leaves the previous one running; production never moved.
    assert _running(kaizen, "support") == {"development": 3, "staging": 2, "production": 2}


def test_a_pinned_previous_version_rolls_back(kaizen: Kaizen) -> None:
    kaizen.apply()
    kaizen.edit("pipelines/ticket-router.yaml", "default_route: tech", "default_route: billing")
    kaizen.apply()
    assert _running(kaizen, "ticket-router") == {"development": 3, "staging": 3}
    kaizen.edit(
        "deployments/ticket-router.yaml",
        "  environment: development\n",
        "  environment: development\n  version: 2\n",
    )

    plan, result = kaizen.apply()

    rollback = plan.action("rollback:Deployment/ticket-router/development")
    assert rollback.summary == (
        "Deployment/ticket-router-dev: ticket-router in development v3 → v2 (rollback)"
    )
    # staging follows development by promotion, so it follows the rollback too.
    assert (
        "rollback:Deployment/ticket-router/development"
        in plan.action("promote:Deployment/ticket-router/staging").depends_on
    )
    assert result.ok, result.outcomes
    assert _running(kaizen, "ticket-router") == {"development": 2, "staging": 2}
    assert not kaizen.plan().has_changes


def test_a_pinned_version_that_cannot_be_reached_is_a_plan_error_naming_the_line(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()
    kaizen.edit(
        "deployments/ticket-router.yaml",
        "  environment: development\n",
        "  environment: development\n  version: 7\n",
    )

    with pytest.raises(PlanError) as raised:
        kaizen.plan()

    message = str(raised.value)
    assert "deployments/ticket-router.yaml:8" in message
    assert "version: v7 is not reachable" in message
    assert "v2 with `version: latest`" in message


def test_a_production_rollback_needs_its_flag_and_changes_nothing_without_it(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()
    kaizen.edit("pipelines/support.yaml", "max_rounds: 3", "max_rounds: 5")
    kaizen.apply()
    kaizen.edit(
        "deployments/support.yaml",
        "  promote_from: staging\n",
        "  version: 2\n",
    )
    kaizen.server.clear_request_log()

    with pytest.raises(ApplyError, match="nothing was changed"):
        kaizen.apply()
    writes = [
        e for e in kaizen.server.request_log() if e.method != "GET" and "/auth/" not in e.path
    ]
    assert writes == []  # refused before the set lock is even taken

    _, result = kaizen.apply(
        options=ApplyOptions(allowed_flags=frozenset({ALLOW_PRODUCTION_ROLLBACK}))
    )
    assert result.ok, result.outcomes
    assert _running(kaizen, "support")["production"] == 2


def test_a_rollback_made_by_hand_shows_up_as_drift(kaizen: Kaizen) -> None:
    kaizen.apply()
    kaizen.edit("pipelines/support.yaml", "max_rounds: 3", "max_rounds: 4")
    kaizen.apply()

    async def roll_back_production(api: KaizenApi) -> None:
        pipeline_id = next(p.id for p in await api.pipelines.list_all() if p.name == "support")
        (active,) = await api.deployments.list_all(
            pipeline_id=pipeline_id, environment="production", status="active"
        )
        rolled = await api.deployments.rollback(active.id)
        await api.deployments.wait_settled(rolled.id, timeout=10)

    kaizen.with_api(roll_back_production)
    plan = kaizen.plan()

    assert [a.summary for a in plan.actions] == [
        "Deployment/support-prod: support in production v2 → v3 (promote from staging)"
    ]
    assert kaizen.apply()[1].ok
    assert _running(kaizen, "support")["production"] == 3


def test_deploying_a_pipeline_change_straight_to_production_is_flagged(kaizen: Kaizen) -> None:
    kaizen.write(
        "deployments/router-prod.yaml",
        "apiVersion: kaizen.io/v1\nkind: Deployment\nmetadata: {name: ticket-router-prod}\n"
        "spec: {pipeline: ticket-router, environment: production}\n",
    )

    plan = kaizen.plan()

    direct = plan.action("deploy:Deployment/ticket-router/production")
    assert any("straight to production" in w for w in direct.warnings)
    promoted = plan.action("promote:Deployment/support/production")
    assert promoted.warnings == ()


def test_a_promote_whose_source_moved_since_the_plan_is_refused_before_it_is_sent(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()

    async def undeploy_staging_and_production(api: KaizenApi) -> None:
        pipeline = next(p for p in await api.pipelines.list_all() if p.name == "support")
        for deployment in await api.deployments.list_all(pipeline_id=pipeline.id, status="active"):
            if deployment.environment != "development":
                await api.deployments.delete(deployment.id)

    kaizen.with_api(undeploy_staging_and_production)
    resources = kaizen.resources()

    async def plan_then_race(api: KaizenApi) -> tuple[Plan, ApplyResult]:
        plan, live = await plan_async(api, resources)
        # After the review, development is changed and redeployed by hand: it runs v3 now.
        pipeline = next(p for p in await api.pipelines.list_all() if p.name == "support")
        await api.pipelines.update(pipeline.id, {"description": "changed by hand"})
        redeployed = await api.deployments.deploy(pipeline.id, "development")
        await api.deployments.wait_settled(redeployed.id, timeout=10)
        kaizen.server.clear_request_log()
        return plan, await apply_plan_async(api, plan, live)

    plan, result = kaizen.with_api(plan_then_race)

    promotes = [a for a in plan.actions if a.verb == "promote"]
    expected = [a.payload.expected_version for a in promotes if isinstance(a.payload, SlotPayload)]
    assert expected == [2, 2]
    staging = next(o for o in result.outcomes if o.action_id == promotes[0].id)
    assert staging.status == "failed"
    assert "cannot promote: development runs v3, the plan expected v2" in staging.message
    # Refused before sending: promoting v3 and then noticing would already have changed staging.
    calls = [(e.method, e.path) for e in kaizen.server.request_log()]
    assert not [c for c in calls if c[0] == "POST" and c[1].endswith("/promote")]
