"""plan and apply end to end, over real HTTP against the reference server."""

from __future__ import annotations

import pytest

from kaizenctl.api.models import Graph, GraphEdge, GraphNode
from kaizenctl.api.records import is_record_name
from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import PlanError
from kaizenctl.reconcile import PlanOptions
from kaizenctl.reconcile.plan import Plan
from tests.reconcile.harness import Kaizen

EXAMPLE_COUNTS = {"create": 12, "replace-graph": 2, "deploy": 2, "promote": 3}


def _writes(kaizen: Kaizen) -> list[tuple[str, str]]:
    return [
        (entry.method, entry.path)
        for entry in kaizen.server.request_log()
        if entry.method in ("POST", "PUT", "PATCH", "DELETE") and "/auth/" not in entry.path
    ]


def test_apply_from_empty_creates_everything_and_a_second_plan_has_no_changes(
    kaizen: Kaizen,
) -> None:
    plan, result = kaizen.apply()

    assert plan.counts() == EXAMPLE_COUNTS
    assert result.ok, result.outcomes
    assert len(result.with_status("done")) == sum(EXAMPLE_COUNTS.values())
    again = kaizen.plan()
    assert not again.has_changes, [a.summary for a in again.actions]
    assert again.unmanaged == ()


def test_apply_writes_each_graph_after_its_agents_and_deploys_after_graphs(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()

    writes = _writes(kaizen)
    first_graph = next(i for i, (m, p) in enumerate(writes) if m == "PUT")
    first_deploy = next(i for i, (m, p) in enumerate(writes) if p.startswith("/api/v1/deployments"))
    assert first_graph < first_deploy

    # A graph waits for the agents it names, not for every agent: compare what the
    # server stamped (one clock, microseconds, writes serialised by its lock).
    async def read(api: KaizenApi) -> list[tuple[list[str], str, list[str]]]:
        agents = {a.id: a for a in await api.agents.list_all()}
        deployments = await api.deployments.list_all()
        rows = []
        for pipeline in await api.pipelines.list_all():
            if is_record_name(pipeline.name):
                continue  # kaizenctl's own set record (an archived pipeline): no graph
            nodes = await api.pipelines.get_nodes(pipeline.id)
            used = [agents[n.agent_id].created_at for n in nodes if n.agent_id]
            runs = [d.created_at for d in deployments if d.pipeline_id == pipeline.id]
            rows.append((used, pipeline.updated_at, runs))
        return rows

    for agents_created, graph_written, deployed in kaizen.with_api(read):
        assert agents_created
        assert deployed
        assert max(agents_created) < graph_written < min(deployed)


def test_an_edited_field_is_planned_as_exactly_that_field(kaizen: Kaizen) -> None:
    kaizen.apply()
    kaizen.edit("agents/triage.yaml", "temperature: 0.1", "temperature: 0.5")

    plan = kaizen.plan()

    assert [a.id for a in plan.actions] == ["update:Agent/triage"]
    (change,) = plan.actions[0].changes
    assert (change.field, change.before, change.after) == ("temperature", 0.1, 0.5)
    _, result = kaizen.apply()
    assert result.ok
    assert not kaizen.plan().has_changes


def test_a_removed_optional_line_resets_the_field_to_the_contract_default(kaizen: Kaizen) -> None:
    kaizen.apply()
    kaizen.edit("agents/triage.yaml", "  max_tokens: 512\n", "")

    plan = kaizen.plan()

    (action,) = plan.actions
    assert [(c.field, c.before, c.after) for c in action.changes] == [("max_tokens", 512, None)]
    assert kaizen.apply()[1].ok
    assert not kaizen.plan().has_changes


def test_drift_made_through_the_api_is_found_field_by_field(kaizen: Kaizen) -> None:
    kaizen.apply()

    async def drift(api: KaizenApi) -> None:
        agents = {a.name: a for a in await api.agents.list_all()}
        await api.agents.update(agents["refunds"].id, {"model": "gpt-4o-mini", "tools": []})
        pipelines = {p.name: p for p in await api.pipelines.list_all()}
        router = pipelines["ticket-router"]
        nodes = await api.pipelines.get_nodes(router.id)
        connections = await api.pipelines.get_connections(router.id)
        kept = [n for n in nodes if n.id != "refunds"]
        await api.pipelines.put_graph(
            router.id,
            Graph(
                nodes=[GraphNode(**n.model_dump(exclude={"pipeline_id"})) for n in kept],
                edges=[
                    GraphEdge(**c.model_dump(exclude={"id", "pipeline_id"}))
                    for c in connections
                    if "refunds" not in (c.source, c.target)
                ],
            ),
        )

    kaizen.with_api(drift)
    plan = kaizen.plan()

    by_id = {a.id: a for a in plan.actions}
    agent_changes = {c.field: (c.before, c.after) for c in by_id["update:Agent/refunds"].changes}
    assert agent_changes == {
        "model": ("gpt-4o-mini", "gpt-4o"),
        "tools": ([], ["issue_refund", "lookup_invoice"]),
    }
    graph_fields = sorted(
        (c.field, c.before is None) for c in by_id["replace-graph:Pipeline/ticket-router"].changes
    )
    assert graph_fields == [("edges", True), ("edges", True), ("nodes.refunds", True)]
    # The graph moved the pipeline's version: its deployments are planned again.
    assert "deploy:Deployment/ticket-router/development" in by_id
    assert kaizen.apply()[1].ok
    assert not kaizen.plan().has_changes


def test_node_positions_left_out_keep_what_the_editor_set(kaizen: Kaizen) -> None:
    kaizen.apply()

    async def move_a_node(api: KaizenApi) -> None:
        pipeline = next(p for p in await api.pipelines.list_all() if p.name == "support")
        nodes = await api.pipelines.get_nodes(pipeline.id)
        connections = await api.pipelines.get_connections(pipeline.id)
        await api.pipelines.put_graph(
            pipeline.id,
            Graph(
                nodes=[
                    GraphNode(
                        **n.model_dump(exclude={"pipeline_id", "x"}),
                        x=999 if n.id == "tech" else n.x,
                    )
                    for n in nodes
                ],
                edges=[
                    GraphEdge(**c.model_dump(exclude={"id", "pipeline_id"})) for c in connections
                ],
            ),
        )

    kaizen.with_api(move_a_node)

    assert not kaizen.plan().has_changes


def test_new_nodes_without_positions_get_a_layered_layout(kaizen: Kaizen) -> None:
    kaizen.apply()

    async def positions(api: KaizenApi) -> dict[str, tuple[float, float]]:
        pipeline = next(p for p in await api.pipelines.list_all() if p.name == "ticket-router")
        return {n.id: (n.x, n.y) for n in await api.pipelines.get_nodes(pipeline.id)}

    placed = kaizen.with_api(positions)
    assert len(set(placed.values())) == len(placed), placed
    # intake → classify → specialists → reply: each layer one column further right.
    assert placed["intake"][0] < placed["classify"][0] < placed["billing"][0] < placed["reply"][0]


def _make_unmanaged(kaizen: Kaizen) -> None:
    async def make(api: KaizenApi) -> None:
        agent = await api.agents.create(
            {"name": "legacy-bot", "system_prompt": "x", "provider": "openai", "model": "m"}
        )
        pipeline = await api.pipelines.create({"name": "legacy-flow", "pattern": "sequential"})
        await api.pipelines.put_graph(
            pipeline.id,
            Graph(nodes=[GraphNode(id="only", node_type="agent", agent_id=agent.id)], edges=[]),
        )
        deployment = await api.deployments.deploy(pipeline.id, "development")
        await api.deployments.wait_settled(deployment.id, timeout=10)
        await api.policies.create(
            {"name": "legacy-policy", "effect": "allow", "resource_type": "agent", "actions": ["x"]}
        )

    kaizen.with_api(make)


def test_unmanaged_resources_are_listed_not_deleted_without_prune(kaizen: Kaizen) -> None:
    kaizen.apply()
    _make_unmanaged(kaizen)

    plan = kaizen.plan()

    assert not plan.has_changes
    assert sorted(f"{u.kind}/{u.name}" for u in plan.unmanaged) == [
        "Agent/legacy-bot",
        "Deployment/legacy-flow/development",
        "Pipeline/legacy-flow",
        "Policy/legacy-policy",
    ]
    kaizen.server.clear_request_log()
    _, result = kaizen.apply()
    assert result.outcomes == ()
    # Nothing to do: not a write at all, not even the set lock.
    assert _writes(kaizen) == []
    assert not kaizen.plan().has_changes


def test_prune_deletes_deployment_then_pipeline_then_agent(kaizen: Kaizen) -> None:
    kaizen.apply()
    _make_unmanaged(kaizen)

    # Made by hand, owned by no set: --prune leaves them, --prune-unmanaged deletes them.
    assert not kaizen.plan(prune=True).has_changes
    plan = kaizen.plan(prune_unmanaged=True)
    assert [a.verb for a in plan.actions] == ["delete"] * 4
    kaizen.server.clear_request_log()
    _, result = kaizen.apply(PlanOptions(prune_unmanaged=True))

    assert result.ok, result.outcomes
    deletes = [p.split("/")[3] for m, p in _writes(kaizen) if m == "DELETE"]
    assert deletes.index("deployments") < deletes.index("pipelines") < deletes.index("agents")
    after = kaizen.plan(prune_unmanaged=True)
    assert not after.has_changes
    assert after.unmanaged == ()


def test_prune_refuses_to_delete_every_resource_of_a_kind_without_confirmation(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()
    for path in (kaizen.folder / "policies").iterdir():
        path.unlink()

    with pytest.raises(PlanError, match=r"every Policy on the server \(4\).*--allow-delete-all"):
        kaizen.plan(prune=True)
    confirmed = kaizen.plan(prune=True, allow_delete_all=True)
    assert sorted(a.id for a in confirmed.actions) == sorted(
        f"delete:Policy/{n}"
        for n in (
            "no-prod-deletes",
            "redact-card-numbers",
            "refunds-need-approval",
            "support-team-deploys",
        )
    )


def test_removing_an_agent_and_its_node_rewrites_the_graph_before_the_delete(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()
    (kaizen.folder / "agents" / "triage.yaml").unlink()
    kaizen.edit(
        "pipelines/ticket-router.yaml",
        "    - id: classify\n      node_type: router\n      agent: triage\n",
        "    - id: classify\n      node_type: router\n",
    )

    plan, result = kaizen.apply(PlanOptions(prune=True))

    delete = plan.action("delete:Agent/triage")
    assert "replace-graph:Pipeline/ticket-router" in delete.depends_on
    assert result.ok, [o for o in result.outcomes if o.status != "done"]
    assert not kaizen.plan(prune=True).has_changes


def test_a_rejected_action_skips_its_dependents_and_keeps_independent_siblings(
    kaizen: Kaizen,
) -> None:
    resources = kaizen.resources()
    plan: Plan

    async def plan_then_race(api: KaizenApi) -> None:
        nonlocal plan
        from kaizenctl.reconcile import apply_plan_async, plan_async

        plan, live = await plan_async(api, resources)
        # Someone creates "triage" by hand between plan and apply: the create is refused (409).
        await api.agents.create(
            {"name": "triage", "system_prompt": "by hand", "provider": "openai", "model": "m"}
        )
        result = await apply_plan_async(api, plan, live)
        failed = result.with_status("failed")
        skipped = result.with_status("skipped")
        done = {o.action_id for o in result.with_status("done")}

        assert [o.action_id for o in failed] == ["create:Agent/triage"]
        assert "409" in failed[0].message
        assert {o.action_id for o in skipped} == {
            "replace-graph:Pipeline/ticket-router",
            "deploy:Deployment/ticket-router/development",
            "promote:Deployment/ticket-router/staging",
        }
        assert all("did not succeed" in o.message for o in skipped)
        # Independent branches went on: the whole support chain and every other create.
        assert "promote:Deployment/support/production" in done
        assert "create:Pipeline/ticket-router" in done
        assert len(done) == len(plan.actions) - 4
        assert result.with_status("not-started") == []

    kaizen.with_api(plan_then_race)

    # The rerun converges: triage is updated to the manifest, the rest completes.
    rerun, result = kaizen.apply()
    assert result.ok, result.outcomes
    assert "update:Agent/triage" in {a.id for a in rerun.actions}
    assert not kaizen.plan().has_changes


def test_a_pipeline_delete_waits_for_its_undeploy(kaizen: Kaizen) -> None:
    kaizen.apply()
    _make_unmanaged(kaizen)
    # Undeploys take a while on this server: a pipeline delete sent alongside would meet 409.
    kaizen.server.set_faults(latency_ms=30)

    plan, result = kaizen.apply(PlanOptions(prune_unmanaged=True))

    pipeline_delete = plan.action("delete:Pipeline/legacy-flow")
    undeploys = [a.id for a in plan.actions if a.kind == "Deployment" and a.verb == "delete"]
    assert undeploys
    assert set(undeploys) <= set(pipeline_delete.depends_on)
    assert result.ok, result.outcomes


def test_tools_and_actions_compare_as_sets_not_lists(kaizen: Kaizen) -> None:
    kaizen.apply()

    async def reorder(api: KaizenApi) -> None:
        agents = {a.name: a for a in await api.agents.list_all()}
        billing = agents["billing-expert"]
        assert sorted(billing.tools) == ["lookup_customer", "lookup_invoice"]
        await api.agents.update(billing.id, {"tools": list(reversed(billing.tools))})
        policies = {p.name: p for p in await api.policies.list_all()}
        policy = next(p for p in policies.values() if len(p.actions) > 1)
        await api.policies.update(policy.id, {"actions": list(reversed(policy.actions))})

    kaizen.with_api(reorder)
    assert not kaizen.plan().has_changes
    # ...while a real difference in the set is one.
    kaizen.edit("agents/specialists.yaml", "lookup_invoice, lookup_customer", "lookup_invoice")
    (update,) = [a for a in kaizen.plan().actions if a.kind == "Agent"]
    assert [c.field for c in update.changes] == ["tools"]


def test_graph_edges_match_by_their_four_fields_in_any_order(kaizen: Kaizen) -> None:
    kaizen.apply()

    async def rewrite(api: KaizenApi, change_handle: bool) -> None:
        pipeline = next(p for p in await api.pipelines.list_all() if p.name == "support")
        nodes = await api.pipelines.get_nodes(pipeline.id)
        edges = list(reversed(await api.pipelines.get_connections(pipeline.id)))
        graph_edges = [
            GraphEdge(
                source=e.source,
                target=e.target,
                source_handle=(
                    "finished" if change_handle and e.source_handle else e.source_handle
                ),
                target_handle=e.target_handle,
            )
            for e in edges
        ]
        graph_nodes = [
            GraphNode(
                id=n.id,
                node_type=n.node_type,
                agent_id=n.agent_id,
                config=n.config,
                x=n.x,
                y=n.y,
            )
            for n in nodes
        ]
        await api.pipelines.put_graph(pipeline.id, Graph(nodes=graph_nodes, edges=graph_edges))

    kaizen.with_api(lambda api: rewrite(api, False))
    assert not kaizen.plan().has_changes  # the same edges, stored in another order
    kaizen.with_api(lambda api: rewrite(api, True))
    plan = kaizen.plan()
    assert [a.id for a in plan.actions if a.verb == "replace-graph"] == [
        "replace-graph:Pipeline/support"
    ]
