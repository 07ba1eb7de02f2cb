"""Drift detection as a nightly job runs it: `plan --detailed-exitcode` in JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

from kaizenctl.api.models import Graph, GraphEdge, GraphNode
from kaizenctl.api.service import KaizenApi
from tests.gitops.conftest import GitOps


async def _drift_by_hand(api: KaizenApi) -> None:
    agents = {a.name: a for a in await api.agents.list_all()}
    await api.agents.update(agents["triage"].id, {"temperature": 0.9, "tools": ["search_kb"]})
    pipelines = {p.name: p for p in await api.pipelines.list_all()}
    router = pipelines["ticket-router"]
    nodes = await api.pipelines.get_nodes(router.id)
    edges = await api.pipelines.get_connections(router.id)
    graph = Graph(
        nodes=[
            GraphNode(
                id=n.id,
                node_type=n.node_type,
                agent_id=n.agent_id,
                config={**n.config, "hand_tuned": True} if i == 0 else n.config,
                x=n.x,
                y=n.y,
            )
            for i, n in enumerate(nodes)
        ],
        edges=[
            GraphEdge(
                source=e.source,
                target=e.target,
                source_handle=e.source_handle,
                target_handle=e.target_handle,
            )
            for e in edges
        ],
    )
    await api.pipelines.put_graph(router.id, graph)
    await api.policies.create(
        {"name": "made-by-hand", "effect": "deny", "resource_type": "agent", "actions": ["delete"]}
    )


def test_drift_report_names_drifted_resources_fields_and_unmanaged(
    gitops: GitOps, examples: Path
) -> None:
    assert gitops.cli("apply", str(examples), "--auto-approve").code == 0
    clean = gitops.cli("plan", str(examples), "--detailed-exitcode", "--format", "json")
    assert clean.code == 0
    assert json.loads(clean.out)["drift"] == {"drifted": False, "resources": [], "unmanaged": []}

    gitops.with_api(_drift_by_hand)
    gitops.server.clear_request_log()

    checked = gitops.cli("plan", str(examples), "--detailed-exitcode", "--format", "json")

    assert checked.code == 2, checked.err
    drift = json.loads(checked.out)["drift"]
    assert drift["drifted"] is True
    by_ref = {f"{r['kind']}/{r['name']}": r for r in drift["resources"]}
    triage = by_ref["Agent/triage"]
    assert triage["how"] == ["changed"]
    fields = {f["field"]: (f["live"], f["git"]) for f in triage["fields"]}
    assert fields["temperature"] == (0.9, 0.1)
    assert fields["tools"] == (["search_kb"], ["lookup_customer", "search_kb"])
    router = by_ref["Pipeline/ticket-router"]
    assert router["how"] == ["graph-changed"]
    [node] = [f for f in router["fields"] if f["field"].startswith("nodes.")]
    assert node["live"]["config"]["hand_tuned"] is True
    assert "hand_tuned" not in node["git"]["config"]
    assert drift["unmanaged"] == [
        {
            "kind": "Policy",
            "name": "made-by-hand",
            "id": drift["unmanaged"][0]["id"],
            "owners": [],
            "held_by": [],
        }
    ]
    # A drift check only reads.
    assert gitops.writes() == []

    markdown = gitops.cli("plan", str(examples), "--detailed-exitcode", "--format", "markdown")
    assert markdown.code == 2
    assert "`~ update Agent/triage` — `temperature`, `tools`" in markdown.out
    assert "`Policy/made-by-hand`" in markdown.out
