"""Table tests for the pure parts: comparison, layout, order, rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaizenctl.api.capabilities import CONTRACT_CAPABILITIES
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.reconcile.diff import PlanOptions, build_plan, values_equal
from kaizenctl.reconcile.layout import layered_positions
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.plan import (
    Action,
    DeletePayload,
    DrawnEdge,
    DrawnNode,
    FieldChange,
    GraphDrawing,
    GraphPayload,
    Plan,
    UpdatePayload,
)
from kaizenctl.reconcile.state import (
    DeploymentSlot,
    GraphState,
    NodeState,
    ObjectState,
    State,
    desired_state,
)
from kaizenctl.redact import MASK
from kaizenctl.render import render_plan
from tests.paths import EXAMPLES


@pytest.mark.parametrize(
    ("before", "after", "equal"),
    [
        (0.7, 0.7, True),
        (1, 1.0, True),
        (0.7, 0.70000001, True),  # a server that rounds
        (0.1, 0.5, False),
        ("a", "b", False),
        (None, 0, False),
        (None, None, True),
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1.0}, True),
        ({"a": 1}, {"a": 2}, False),
        ([1, 2], [2, 1], False),  # lists keep order; sets are sorted before comparing
        ({"a": {"b": None}}, {"a": {}}, False),
        ({"a": [{"b": 1.0}]}, {"a": [{"b": 1}]}, True),
        ({"a": [{"b": 1.0}]}, {"a": [{"b": 1.5}]}, False),
    ],
)
def test_values_equal(before: Any, after: Any, equal: bool) -> None:
    assert values_equal(before, after) is equal


# Small domains, so that the two sides are often alike: 1 / 1.0 / True, "1", None, nesting.
_scalars = st.sampled_from([None, True, False, 0, 1, 1.0, 0.0, 2.5, "1", "a", ""])
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(_json_values, _json_values)
def test_the_quick_equality_only_answers_what_the_full_comparison_would(
    before: Any, after: Any
) -> None:
    """``values_equal`` skips JSON and DeepDiff when values are plainly equal: that shortcut
    must never call equal what the full comparison calls different."""
    from deepdiff import DeepDiff

    from kaizenctl.reconcile.diff import FLOAT_TOLERANCE, _plainly_equal

    if _plainly_equal(before, after):
        assert not DeepDiff(
            before, after, ignore_numeric_type_changes=True, math_epsilon=FLOAT_TOLERANCE
        )


@pytest.mark.parametrize(
    ("nodes", "edges", "columns"),
    [
        (["a", "b", "c"], [("a", "b"), ("b", "c")], {"a": 0, "b": 1, "c": 2}),
        (["a", "b", "c"], [("a", "c"), ("b", "c")], {"a": 0, "b": 0, "c": 1}),
        # A supervisor loop: the cycle is broken where it was entered.
        (["lead", "w"], [("lead", "w"), ("w", "lead")], {"lead": 0, "w": 1}),
        (["x"], [("x", "x")], {"x": 0}),
        (["a", "b"], [], {"a": 0, "b": 0}),
    ],
)
def test_layered_positions_put_each_node_right_of_its_predecessors(
    nodes: list[str], edges: list[tuple[str, str]], columns: dict[str, int]
) -> None:
    positions = layered_positions(nodes, edges)

    xs = sorted({x for x, _ in positions.values()})
    assert {node: xs.index(positions[node][0]) for node in nodes} == columns
    assert len(set(positions.values())) == len(nodes)


def _live(**kinds: dict[str, ObjectState]) -> LiveSnapshot:
    state = State(objects=dict(kinds))
    return LiveSnapshot(state=state, listed={}, deployments=[])


def _example_desired() -> State:
    return desired_state(list(load_manifests([str(EXAMPLES)]).resources))


def test_plan_from_empty_orders_creates_by_dependency_depth() -> None:
    plan = build_plan(_example_desired(), _live())

    position = {a.id: i for i, a in enumerate(plan.actions)}
    for action in plan.actions:
        for dependency in action.depends_on:
            assert position[dependency] < position[action.id], (dependency, action.id)
    assert plan.action("promote:Deployment/support/production").depends_on == (
        "promote:Deployment/support/staging",
        "create:Pipeline/support",
        "replace-graph:Pipeline/support",
    )


def test_deletes_are_listed_first_and_agents_wait_for_the_graphs_that_hold_them() -> None:
    desired = State()
    held = ObjectState(
        "Pipeline",
        "old-flow",
        {"description": None, "pattern": "p", "status": "draft", "config": {}},
        live_id="p1",
        graph=GraphState(nodes={"n": NodeState("agent", "old-agent", {}, (0, 0))}),
        version=2,
    )
    live = _live(
        Agent={"old-agent": ObjectState("Agent", "old-agent", {}, live_id="a1")},
        Pipeline={"old-flow": held},
    )
    live.state.deployments = {
        "old-flow/production": DeploymentSlot(
            "old-flow", "production", active_id="d1", active_version=2, running_ids=("d1",)
        )
    }

    plan = build_plan(desired, live, PlanOptions(prune_unmanaged=True, allow_delete_all=True))

    assert [a.id for a in plan.actions] == [
        "delete:Deployment/old-flow/production",
        "delete:Pipeline/old-flow",
        "delete:Agent/old-agent",
    ]
    assert plan.action("delete:Agent/old-agent").depends_on == ("delete:Pipeline/old-flow",)
    assert plan.action("delete:Deployment/old-flow/production").requires_flag == (
        "--allow-production-delete"
    )
    assert build_plan(desired, live).actions == ()


def test_target_keeps_the_resource_and_what_it_depends_on() -> None:
    plan = build_plan(
        _example_desired(), _live(), PlanOptions(targets=frozenset({"Pipeline/ticket-router"}))
    )

    assert sorted(a.id for a in plan.actions) == sorted(
        [
            "create:Pipeline/ticket-router",
            "replace-graph:Pipeline/ticket-router",
            "create:Agent/triage",
            "create:Agent/billing-expert",
            "create:Agent/tech-support",
            "create:Agent/refunds",
            "create:Agent/summarizer",
        ]
    )


def _plan_with_secret() -> Plan:
    return Plan(
        actions=(
            Action(
                id="update:Agent/a",
                verb="update",
                kind="Agent",
                name="a",
                summary="update Agent/a",
                changes=(
                    FieldChange(
                        field="system_prompt",
                        before="old",
                        after="key=s3cr3t-value",
                        sensitive=True,
                    ),
                    FieldChange(field="temperature", before=0.7, after=0.2),
                ),
                payload=UpdatePayload(
                    changes={"system_prompt": "key=s3cr3t-value", "temperature": 0.2}
                ),
            ),
            Action(
                id="replace-graph:Pipeline/p",
                verb="replace-graph",
                kind="Pipeline",
                name="p",
                summary="replace graph of Pipeline/p",
                changes=(FieldChange(field="nodes.b", after={"node_type": "agent"}),),
                payload=GraphPayload(nodes=(), edges=()),
                drawing=GraphDrawing(
                    nodes=(
                        DrawnNode(id="a", node_type="agent", agent="x", mark="same"),
                        DrawnNode(id="b", node_type="agent", agent="y", mark="added"),
                        DrawnNode(id="c.old", node_type="agent", agent=None, mark="removed"),
                    ),
                    edges=(
                        DrawnEdge(source="a", target="b", mark="added"),
                        DrawnEdge(source="a", target="c.old", mark="removed"),
                    ),
                ),
            ),
            Action(
                id="delete:Policy/x",
                verb="delete",
                kind="Policy",
                name="x",
                summary="delete Policy/x",
                payload=DeletePayload(),
            ),
        )
    )


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_sensitive_values_are_masked_in_every_format(fmt: str) -> None:
    output = render_plan(_plan_with_secret(), fmt)  # type: ignore[arg-type]

    assert "s3cr3t-value" not in output
    assert MASK in output
    assert "0.2" in output


def test_text_plan_reads_like_terraform() -> None:
    output = render_plan(_plan_with_secret(), "text")

    assert "  ~ update Agent/a" in output
    assert "      ~ temperature: 0.7 → 0.2" in output
    assert "      + nodes.b = " in output
    assert output.rstrip().endswith("Plan: 1 to update, 1 graph(s) to replace, 1 to delete.")
    assert "\x1b[" not in output  # no colour unless asked


def test_json_plan_is_versioned_and_complete() -> None:
    data = json.loads(render_plan(_plan_with_secret(), "json"))

    assert data["format_version"] == 1
    assert data["type"] == "plan"
    assert data["summary"] == {"update": 1, "replace-graph": 1, "delete": 1}
    assert [a["id"] for a in data["actions"]] == [
        "update:Agent/a",
        "replace-graph:Pipeline/p",
        "delete:Policy/x",
    ]
    assert data["actions"][0]["changes"][0] == {
        "field": "system_prompt",
        "before": MASK,
        "after": MASK,
        "sensitive": True,
    }


def test_markdown_plan_puts_deletes_first_and_draws_changed_graphs() -> None:
    output = render_plan(_plan_with_secret(), "markdown")

    assert output.index("1 to delete") < output.index("#### Changes")
    assert "```mermaid" in output
    assert 'n1["+ b<br/>y"]:::added' in output
    assert 'n2["- c.old"]:::removed' in output
    assert 'n0 ==>|"added"| n1' in output
    assert 'n0 -.->|"removed"| n2' in output
    assert "<details>" in output


def test_markdown_plan_is_trimmed_to_fit_a_comment() -> None:
    big = Plan(
        actions=tuple(
            Action(
                id=f"update:Agent/a{i}",
                verb="update",
                kind="Agent",
                name=f"a{i}",
                summary=f"update Agent/a{i}",
                changes=(FieldChange(field="system_prompt", before="x" * 400, after="y" * 400),),
                payload=UpdatePayload(changes={"system_prompt": "y" * 400}),
            )
            for i in range(600)
        )
    )

    output = render_plan(big, "markdown")

    assert len(output) <= 61_000
    assert "Plan: 600 to update." in output
    assert "more actions left out" in output or "plan trimmed" in output


class _TwoAgentsNamedAlike:
    """Just enough of KaizenApi for fetch_live: a server that does not enforce unique names."""

    class _Lists:
        def __init__(self, items: list[Any]) -> None:
            self.items = items

        async def list_all(self) -> list[Any]:
            return self.items

    def __init__(self) -> None:
        from kaizenctl.api.models import Agent

        twin = {"system_prompt": "p", "provider": "openai", "model": "m", "name": "triage"}
        self.agents = self._Lists([Agent(id="a-1", **twin), Agent(id="a-2", **twin)])
        self.pipelines = self._Lists([])
        self.policies = self._Lists([])
        self.deployments = self._Lists([])
        self.capabilities = CONTRACT_CAPABILITIES  # live reads the kinds the server serves


def test_live_state_with_two_resources_of_one_name_is_refused_with_both_ids() -> None:
    import asyncio

    from kaizenctl.errors import PlanError
    from kaizenctl.reconcile.live import fetch_live

    with pytest.raises(PlanError, match=r"Agent/triage has ids a-1, a-2"):
        asyncio.run(fetch_live(_TwoAgentsNamedAlike()))  # type: ignore[arg-type]
