"""Flows of the studio dialect through the command line, over real HTTP to the fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kaizenctl.cli import main
from tests.studio.studio_fake import ORG, FakeStudio, widened_float32


def _apply(folder: Path, *extra: str) -> int:
    return main(["apply", "--auto-approve", *extra, str(folder)])


def _plan_json(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["plan", "--format", "json", *extra, str(folder)]) == 0
    plan: dict[str, Any] = json.loads(capsys.readouterr().out)
    return plan


def _changes(plan: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(a["id"], sorted(c["field"] for c in a["changes"])) for a in plan["actions"]]


@pytest.fixture
def applied(studio: FakeStudio, studio_env: str, studio_examples: Path) -> Path:
    assert _apply(studio_examples) == 0
    return studio_examples


def test_a_change_through_the_api_is_planned_as_exactly_that_and_applied_back(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    studio.agent_named("billing-expert")["temperature"] = widened_float32(0.9)
    support = studio.pipeline_named("support")
    nodes, _ = studio.graph_of(support["id"])
    tech = next(n for n in nodes if n["label"] == "tech")
    # Removed as an editor does it: the node and the edges that touch it.
    del studio.nodes[tech["id"]]
    for key, edge in list(studio.connections.items()):
        if tech["id"] in (edge["source_node_id"], edge["target_node_id"]):
            del studio.connections[key]

    plan = _plan_json(applied, capsys)
    assert _changes(plan) == [
        ("update:Agent/billing-expert", ["temperature"]),
        ("replace-graph:Pipeline/support", ["edges", "edges", "nodes.tech"]),
    ]
    assert _apply(applied) == 0
    assert studio.agent_named("billing-expert")["temperature"] == widened_float32(0.3)
    assert "tech" in {n["label"] for n in studio.graph_of(support["id"])[0]}
    assert main(["plan", "--detailed-exitcode", str(applied)]) == 0


def test_prune_removes_exactly_what_left_the_manifests(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (applied / "pipelines" / "escalations.yaml").unlink()
    plan = _plan_json(applied, capsys, "--prune")
    assert [a["id"] for a in plan["actions"]] == ["delete:Pipeline/escalations"]

    assert _apply(applied, "--prune") == 0
    assert sorted(p["name"] for p in studio.live_pipelines()) == ["support"]
    # Soft-deleted: still on the server as archived, and absent to kaizenctl.
    assert [p["status"] for p in studio.pipelines.values() if p["name"] == "escalations"] == [
        "archived"
    ]
    assert main(["plan", "--detailed-exitcode", "--prune", str(applied)]) == 0


def test_export_then_plan_shows_no_changes(
    applied: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    assert main(["export", "--out", str(out)]) == 0
    assert main(["plan", "--detailed-exitcode", "--prune", str(out)]) == 0
    agent = (out / "agents" / "summarizer.yaml").read_text()
    assert "agent_type: task" in agent
    assert "provider" not in agent
    assert "temperature: 0.1\n" in agent


def test_two_pipelines_with_the_same_node_ids_are_both_stored_whole(
    studio: FakeStudio, applied: Path
) -> None:
    labels = {
        p["name"]: sorted(n["label"] for n in studio.graph_of(p["id"])[0])
        for p in studio.live_pipelines()
    }
    assert labels == {
        "support": ["billing", "lead", "summary", "tech"],
        "escalations": ["lead", "summary", "tech"],
    }
    # Stored under ids derived per pipeline, never the bare manifest id.
    assert not {"lead", "tech"} & set(studio.nodes)


def test_a_graph_the_server_stored_differently_fails_the_apply_loudly(
    studio: FakeStudio, studio_env: str, studio_examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaizenctl.api.studio import node_wire_id

    assert _apply(studio_examples) == 0
    support = studio.pipeline_named("support")
    (studio_examples / "pipelines" / "support.yaml").write_text(
        (studio_examples / "pipelines" / "support.yaml")
        .read_text()
        .replace("    - {from: lead, to: summary, source_handle: done}\n", "")
        .replace("  edges:\n", "  edges:\n    - {from: lead, to: late}\n")
        .replace(
            "  nodes:\n",
            "  nodes:\n    - {id: late, node_type: connector}\n",
        )
    )
    # The server's insert of the new node fails inside it, and it answers 200 anyway.
    studio.failing_node_ids.add(node_wire_id(support["id"], "late"))
    capsys.readouterr()
    assert _apply(studio_examples) == 1
    output = capsys.readouterr()
    assert "node late was not stored" in output.out + output.err
    assert main(["plan", "--detailed-exitcode", str(studio_examples)]) == 2


def test_positions_left_out_of_a_manifest_are_kept(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    support = studio.pipeline_named("support")
    billing = next(n for n in studio.graph_of(support["id"])[0] if n["label"] == "billing")
    billing["position_x"], billing["position_y"] = 812.5, 64.0  # moved in the editor
    assert main(["plan", "--detailed-exitcode", str(applied)]) == 0
    # A graph change elsewhere rewrites the graph; the moved node stays where it was put.
    path = applied / "pipelines" / "support.yaml"
    path.write_text(path.read_text().replace("    - {from: tech, to: lead}\n", ""))
    assert _apply(applied) == 0
    billing = next(n for n in studio.graph_of(support["id"])[0] if n["label"] == "billing")
    assert (billing["position_x"], billing["position_y"]) == (812.5, 64.0)


def test_tools_are_a_sub_resource_diffed_by_name(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = studio.agent_named("billing-expert")
    kept = next(t for t in studio.tools[agent["id"]] if t["name"] == "lookup_invoice")
    path = applied / "agents" / "support.yaml"
    path.write_text(
        path.read_text().replace("[lookup_invoice, lookup_customer]", "[lookup_invoice, refund]")
    )
    studio.requests.clear()
    assert _apply(applied) == 0
    assert sorted(t["name"] for t in studio.tools[agent["id"]]) == ["lookup_invoice", "refund"]
    # The unchanged tool was left alone: one delete, one add.
    assert kept in studio.tools[agent["id"]]
    tool_writes = [w for w in studio.writes() if "/tools" in w[1]]
    assert [m for m, _ in tool_writes] == ["DELETE", "POST"]


def test_is_active_is_the_status_and_archived_agents_are_absent(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert studio.agent_named("support-lead")["status"] == "active"
    assert studio.agent_named("tech-support")["status"] == "draft"  # is_active: false
    # Archived by hand in the platform: gone to kaizenctl, so the plan creates it again.
    studio.agent_named("summarizer")["status"] = "archived"
    plan = _plan_json(applied, capsys)
    assert next(a["id"] for a in plan["actions"]) == "create:Agent/summarizer"


def test_two_live_agents_of_one_name_are_refused(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = studio.agent_named("summarizer")
    twin = {**agent, "id": studio.new_id()}
    studio.agents[twin["id"]] = twin
    capsys.readouterr()
    assert main(["plan", str(applied)]) == 1
    err = capsys.readouterr().err
    assert "more than one Agent with the same name" in err
    assert agent["id"] in err
    assert twin["id"] in err


def test_only_the_managed_workspace_and_organization_are_read_or_pruned(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = studio.new_id()
    stranger = {
        **studio.agent_named("summarizer"),
        "id": studio.new_id(),
        "workspace_id": elsewhere,
        "name": "other-workspace",
    }
    studio.agents[stranger["id"]] = stranger
    foreign = {
        **studio.pipeline_named("support"),
        "id": studio.new_id(),
        "organization_id": "x",
        "name": "foreign",
    }
    studio.pipelines[foreign["id"]] = foreign
    governance = applied / "policies" / "governance.yaml"
    governance.write_text(governance.read_text().split("---")[0])
    plan = _plan_json(applied, capsys, "--prune")
    assert [a["id"] for a in plan["actions"]] == ["delete:Policy/refunds-need-approval"]
    assert "other-workspace" not in json.dumps(plan)
    assert "foreign" not in json.dumps(plan)
    assert foreign["organization_id"] != ORG


def test_an_agent_type_change_replaces_the_agent_and_repoints_its_graphs(
    studio: FakeStudio, applied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = studio.agent_named("summarizer")
    path = applied / "agents" / "support.yaml"
    path.write_text(path.read_text().replace("agent_type: task", "agent_type: custom"))
    plan = _plan_json(applied, capsys)
    assert sorted(a["id"] for a in plan["actions"]) == [
        "create:Agent/summarizer",
        "delete:Agent/summarizer",
        "replace-graph:Pipeline/escalations",
        "replace-graph:Pipeline/support",
    ]
    assert _apply(applied) == 0
    new = studio.agent_named("summarizer")
    assert new["id"] != old["id"]
    assert new["agent_type"] == "custom"
    assert old["status"] == "archived"
    for pipeline in studio.live_pipelines():
        summary = next(n for n in studio.graph_of(pipeline["id"])[0] if n["label"] == "summary")
        assert summary["agent_id"] == new["id"]
    assert main(["plan", "--detailed-exitcode", str(applied)]) == 0


def test_writing_the_servers_defaults_plans_the_same_as_leaving_them_out(
    applied: Path,
) -> None:
    agents = applied / "agents" / "support.yaml"
    agents.write_text(
        agents.read_text().replace(
            "  tools: [search_kb]\n", "  tools: [search_kb]\n  agent_type: chat\n"
        )
    )
    pipelines = applied / "pipelines" / "escalations.yaml"
    pipelines.write_text(
        pipelines.read_text().replace(
            "{from: lead, to: tech}",
            "{from: lead, to: tech, source_handle: output, target_handle: input}",
        )
    )
    assert main(["plan", "--detailed-exitcode", str(applied)]) == 0


def test_a_pipeline_status_the_manifests_do_not_know_is_never_sent() -> None:
    from kaizenctl.api.errors import ApiError
    from kaizenctl.api.studio import _PIPELINE_WIRE, _to_wire

    assert _to_wire({"status": "active"}, _PIPELINE_WIRE, "PUT", "/p") == {"status": "active"}
    with pytest.raises(ApiError, match="PUT /p: pipeline status 'bogus' is not one of"):
        _to_wire({"status": "bogus"}, _PIPELINE_WIRE, "PUT", "/p")


def test_a_policy_of_several_actions_is_never_sent() -> None:
    from kaizenctl.api.errors import ApiError
    from kaizenctl.api.studio import _POLICY_WIRE, _to_wire

    assert _to_wire({"actions": ["read"]}, _POLICY_WIRE, "POST", "/p") == {"action": "read"}
    with pytest.raises(ApiError, match="POST /p: this server holds exactly one action"):
        _to_wire({"actions": ["read", "write"]}, _POLICY_WIRE, "POST", "/p")
