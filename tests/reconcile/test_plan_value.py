"""The plan is a typed value: one payload per verb, in the planner's own words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from kaizenctl.gitops.saved_plan import (
    SAVED_PLAN_FORMAT_VERSION,
    build_saved_plan,
    read_saved_plan,
    write_saved_plan,
)
from kaizenctl.reconcile.diff import build_plan
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.plan import (
    VERB_PAYLOADS,
    Action,
    ActionPayload,
    AgentDeployPayload,
    AgentPromotePayload,
    CreatePayload,
    DeletePayload,
    GatewayUpdatePayload,
    GraphPayload,
    Plan,
    PlannedEdge,
    PlannedNode,
    SlotPayload,
    StopPayload,
    UndeployPayload,
    UpdatePayload,
    Verb,
)
from kaizenctl.reconcile.state import State
from tests.reconcile.test_units import _example_desired

WIRE_NAMES = ("position_x", "position_y", "source_node_id", "target_node_id", "agent_id")


def _plan_from_empty() -> Plan:
    return build_plan(_example_desired(), LiveSnapshot(state=State(), listed={}, deployments=[]))


def _action(verb: Verb, kind: str, name: str, payload: ActionPayload) -> Action:
    return Action(
        id=f"{verb}:{kind}/{name}",
        verb=verb,
        kind=kind,
        name=name,
        summary=f"{verb} {kind}/{name}",
        payload=payload,
    )


def _plan_with_every_payload() -> Plan:
    """One action per payload type: the named kinds', the pipeline slots', the rollout's."""
    deploy_to = {
        "agent": "helper",
        "gateway": "staging-gw",
        "gateway_id": "gw-2",
        "deployment": "helper-staging",
    }
    return Plan(
        actions=(
            _action("create", "Agent", "a", CreatePayload(fields={"name": "a", "model": "m"})),
            _action(
                "create",
                "Agent",
                "b",
                CreatePayload(fields={"name": "b", "agent_type": "chat"}, replace=True),
            ),
            _action("update", "Agent", "c", UpdatePayload(changes={"temperature": 0.2})),
            _action(
                "update",
                "Gateway",
                "staging-gw",
                GatewayUpdatePayload(
                    changes={"api_url": "https://gw.example"},
                    description="staging",
                    key_stamp="[kaizenctl api_key scrypt 00:11]",
                    api_key="plain-test-key",
                ),
            ),
            _action("delete", "Policy", "p", DeletePayload()),
            _action("delete", "Agent", "b", DeletePayload(replace=True)),
            _action(
                "delete",
                "Deployment",
                "support/development",
                UndeployPayload(deployment_ids=("d-1", "d-2")),
            ),
            _action(
                "stop", "Deployment", "helper/staging/ad-9", StopPayload(deployment_ids=("ad-9",))
            ),
            _action(
                "replace-graph",
                "Pipeline",
                "support",
                GraphPayload(
                    nodes=(
                        PlannedNode(id="in", node_type="input", x=0, y=0),
                        PlannedNode(
                            id="t", node_type="agent", agent="a", config={"k": [1]}, x=250, y=0
                        ),
                    ),
                    edges=(PlannedEdge(source="in", target="t", source_handle="out"),),
                ),
            ),
            _action(
                "promote",
                "Deployment",
                "support/staging",
                SlotPayload(
                    pipeline="support",
                    environment="staging",
                    expected_version=2,
                    deployment="support-staging",
                    source_environment="development",
                ),
            ),
            _action(
                "deploy",
                "Deployment",
                "helper/development",
                AgentDeployPayload(
                    agent="helper",
                    environment="development",
                    gateway="dev-gw",
                    deployment="helper-dev",
                    replaces=("ad-1",),
                ),
            ),
            _action(
                "promote",
                "Deployment",
                "helper/staging",
                AgentPromotePayload(
                    **deploy_to,
                    environment="staging",
                    source_environment="development",
                    pending_promotion="pr-3",
                ),
            ),
        ),
    )


def test_the_plan_with_every_payload_type_covers_them_all() -> None:
    covered = {type(a.payload) for a in _plan_with_every_payload().actions}

    assert covered == set(get_args(ActionPayload))


def test_a_plan_with_every_payload_type_round_trips_as_json_and_as_a_saved_plan_file(
    tmp_path: Path,
) -> None:
    plan = _plan_with_every_payload()

    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    saved = build_saved_plan(
        server="http://127.0.0.1:1",
        organization_id="org-1",
        plan=plan,
        live=LiveSnapshot(state=State(), listed={}, deployments=[]),
        resources=[],
        environ={},
    )
    plan_file = tmp_path / "plan.json"
    write_saved_plan(saved, plan_file)
    read_back = read_saved_plan(plan_file)

    assert read_back.format_version == SAVED_PLAN_FORMAT_VERSION == 3
    assert Plan.model_validate(read_back.plan) == plan


def test_every_action_carries_the_payload_of_its_verb_and_the_plan_round_trips() -> None:
    plan = _plan_from_empty()

    assert {a.verb for a in plan.actions} >= {"create", "replace-graph", "deploy", "promote"}
    for action in plan.actions:
        assert isinstance(action.payload, VERB_PAYLOADS[action.verb]), action.id
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert Plan.model_validate(json.loads(plan.model_dump_json())) == plan


def test_payloads_use_no_wire_names_and_display_data_stays_out_of_them() -> None:
    plans = [_plan_from_empty(), _plan_with_every_payload()]
    payloads = json.dumps(
        [a.payload.model_dump() for plan in plans for a in plan.actions if a.payload]
    )

    for wire_name in WIRE_NAMES:
        assert wire_name not in payloads
    assert "mark" not in payloads
    plan = plans[0]
    graph = plan.action("replace-graph:Pipeline/support")
    assert isinstance(graph.payload, GraphPayload)
    assert graph.drawing is not None
    assert {node.id for node in graph.drawing.nodes} == {node.id for node in graph.payload.nodes}
    promote = plan.action("promote:Deployment/support/staging")
    assert isinstance(promote.payload, SlotPayload)
    assert promote.payload.source_environment == "development"


@pytest.mark.parametrize(
    ("verb", "payload", "message"),
    [
        ("delete", CreatePayload(fields={"name": "a"}), "a delete action cannot carry a create"),
        ("create", DeletePayload(), "a create action cannot carry a delete"),
        ("rollback", StopPayload(deployment_ids=("x",)), "a rollback action cannot carry a stop"),
        (
            "stop",
            UndeployPayload(deployment_ids=("x",)),
            "a stop action cannot carry an undeploy payload",
        ),
        (
            "deploy",
            AgentPromotePayload(
                agent="a",
                environment="staging",
                gateway="g",
                deployment="d",
                source_environment="development",
            ),
            "a deploy action cannot carry an agent-promote payload",
        ),
        (
            "update",
            SlotPayload(pipeline="p", environment="e", expected_version=1, deployment="d"),
            "an update action cannot carry a slot payload",
        ),
    ],
)
def test_a_payload_that_does_not_fit_its_verb_is_refused(
    verb: Verb, payload: ActionPayload, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _action(verb, "Agent", "a", payload)


def test_a_payload_read_back_that_does_not_fit_its_verb_is_refused() -> None:
    document = json.loads(_plan_with_every_payload().model_dump_json())
    document["actions"][0]["payload"] = {"type": "stop", "deployment_ids": ["x"]}

    with pytest.raises(ValidationError, match="a create action cannot carry a stop payload"):
        Plan.model_validate(document)


def test_an_action_without_a_payload_is_refused_when_read() -> None:
    """Every action carries what it executes: a saved plan missing one is damaged."""
    document = json.loads(_plan_with_every_payload().model_dump_json())
    del document["actions"][0]["payload"]

    with pytest.raises(ValidationError, match="payload"):
        Plan.model_validate(document)
