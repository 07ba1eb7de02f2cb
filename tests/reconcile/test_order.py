"""The order of kinds and of actions comes from the registry's references, never by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kaizenctl.kinds import KINDS, KindInfo, Reference, create_order, delete_order
from kaizenctl.manifests.models import AgentSpec
from kaizenctl.reconcile.diff import PlanOptions, build_plan
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.state import (
    DeploymentSlot,
    GraphState,
    NodeState,
    ObjectState,
    State,
)
from tests.reconcile.test_units import _example_desired

PIPELINE_FIELDS: dict[str, object] = {
    "description": None,
    "pattern": "p",
    "status": "draft",
    "config": {},
}


def test_kinds_are_created_after_what_they_reference_and_deleted_in_reverse() -> None:
    assert create_order() == ("Agent", "Gateway", "Policy", "Pipeline", "Deployment")
    assert delete_order() == ("Deployment", "Pipeline", "Policy", "Gateway", "Agent")


def test_a_reference_outranks_rank_and_rank_breaks_ties() -> None:
    def kind(name: str, rank: int, *references: str) -> KindInfo:
        return KindInfo(
            name,
            AgentSpec,
            rank=rank,
            plural=name.lower(),
            references=tuple(Reference(ref, lambda spec: []) for ref in references),
        )

    table = {
        info.kind: info
        for info in (
            kind("Late", 0, "Base"),  # rank 0, but it names Base: after it
            kind("Base", 5),
            kind("Early", 1),
            kind("Alpha", 1),  # same rank as Early: by name
        )
    }
    assert create_order(table) == ("Alpha", "Early", "Base", "Late")
    assert delete_order(table) == ("Late", "Base", "Early", "Alpha")

    with pytest.raises(ValueError, match="cycle"):
        create_order({**table, "Base": replace(table["Base"], references=table["Late"].references)})
    with pytest.raises(ValueError, match="undeclared kinds: Ghost"):
        create_order({"Late": kind("Late", 0, "Ghost")})


def _pruned_everything() -> tuple[LiveSnapshot, State]:
    """Live: an agent, a pipeline whose graph uses it, the pipeline running in production."""
    pipeline = ObjectState(
        "Pipeline",
        "old-flow",
        dict(PIPELINE_FIELDS),
        live_id="p1",
        graph=GraphState(nodes={"n": NodeState("agent", "old-agent", {}, (0, 0))}),
        version=2,
    )
    state = State(
        objects={
            "Agent": {"old-agent": ObjectState("Agent", "old-agent", {}, live_id="a1")},
            "Pipeline": {"old-flow": pipeline},
        },
        deployments={
            "old-flow/production": DeploymentSlot(
                "old-flow", "production", active_id="d1", active_version=2, running_ids=("d1",)
            )
        },
    )
    return LiveSnapshot(state=state, listed={}, deployments=[]), State()


def test_a_pipeline_is_deleted_after_its_undeploy_and_an_agent_after_the_pipeline() -> None:
    live, desired = _pruned_everything()

    plan = build_plan(desired, live, PlanOptions(prune_unmanaged=True, allow_delete_all=True))

    assert plan.action("delete:Pipeline/old-flow").depends_on == (
        "delete:Deployment/old-flow/production",
    )
    assert plan.action("delete:Agent/old-agent").depends_on == ("delete:Pipeline/old-flow",)
    assert plan.action("delete:Deployment/old-flow/production").depends_on == ()


def test_an_agent_delete_waits_for_the_graph_that_lets_go_of_it() -> None:
    live, _ = _pruned_everything()
    # The pipeline stays (described by a manifest) but its graph no longer uses the agent.
    desired = _example_desired()
    kept = desired.objects["Pipeline"]["support"]
    live.state.objects["Pipeline"] = {
        "support": replace(
            kept,
            live_id="p1",
            resource=None,
            version=3,
            graph=GraphState(nodes={"n": NodeState("agent", "old-agent", {}, (0, 0))}),
        )
    }
    live.state.deployments = {}

    plan = build_plan(desired, live, PlanOptions(prune_unmanaged=True, allow_delete_all=True))

    assert plan.action("delete:Agent/old-agent").depends_on == ("replace-graph:Pipeline/support",)


def test_writes_wait_for_the_writes_of_what_they_reference() -> None:
    plan = build_plan(_example_desired(), LiveSnapshot(state=State(), listed={}, deployments=[]))

    graph = plan.action("replace-graph:Pipeline/support")
    agents = {ref.kind for ref in KINDS["Pipeline"].references}
    assert agents == {"Agent"}
    assert [d for d in graph.depends_on if d.startswith("create:Agent/")]
    assert graph.depends_on[-1] == "create:Pipeline/support"
    deploy = plan.action("deploy:Deployment/support/development")
    assert deploy.depends_on == ("create:Pipeline/support", "replace-graph:Pipeline/support")


def test_desired_state_keeps_slot_kinds_by_identity() -> None:
    desired = _example_desired()
    assert "support/development" in desired.deployment_specs
    assert "Deployment" not in desired.objects
