"""Export end to end: live state → manifests → `plan` shows no changes, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import yaml

from kaizenctl.api.models import Graph, GraphEdge, GraphNode
from kaizenctl.api.service import KaizenApi
from tests.gitops.conftest import GitOps

PROVIDERS = ("openai", "anthropic", "azure", "ollama")
GENERATED = {"Agent": 90, "Pipeline": 45, "Policy": 50, "Deployment": 15}


def test_export_of_the_examples_plans_no_changes(
    gitops: GitOps, examples: Path, tmp_path: Path
) -> None:
    assert gitops.cli("apply", str(examples), "--auto-approve").code == 0
    out = tmp_path / "exported"

    exported = gitops.cli("export", "--out", str(out))

    assert exported.code == 0, exported.err
    assert exported.err == ""  # the examples hold nothing a manifest cannot express
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.yaml"))
    assert "agents/triage.yaml" in files
    assert "pipelines/support.yaml" in files
    assert "deployments/support-production.yaml" in files
    summarizer = yaml.safe_load((out / "agents" / "summarizer.yaml").read_text())
    # Server defaults and server-owned fields are left out.
    assert summarizer["spec"] == {
        "description": "Writes the case summary for the CRM",
        "system_prompt": "Summarize the conversation in five bullet points for the CRM.",
        "provider": "ollama",
        "model": "llama3.1:8b",
    }
    triage_text = (out / "agents" / "triage.yaml").read_text()
    assert "system_prompt: |" in triage_text  # multi-line text as a block scalar

    planned = gitops.cli("plan", str(out), "--detailed-exitcode")
    assert planned.code == 0, planned.out + planned.err
    assert "No changes." in planned.out
    assert "Unmanaged" not in planned.out

    again = gitops.cli("export", "--out", str(out))
    assert again.code == 1
    assert "--force" in again.err
    assert gitops.cli("export", "--out", str(out), "--force").code == 0


async def _generate(api: KaizenApi) -> None:
    """A platform built by hand: every shape the contract allows, 200 resources in all."""
    agents = await asyncio.gather(
        *(
            api.agents.create(
                {
                    "name": f"agent-{i:03d}",
                    "system_prompt": (
                        f"You are agent {i}.\nAnswer briefly.\n"
                        if i % 3
                        else f"Literal ${{NOT_A_VARIABLE}} and $${{x}} in agent {i}"
                    ),
                    "provider": PROVIDERS[i % 4],
                    "model": f"model-{i % 7}",
                    **({"description": f"Agent number {i}"} if i % 2 else {}),
                    **({"temperature": round(0.1 * (i % 10), 1)} if i % 5 else {}),
                    **({"max_tokens": 256 * (1 + i % 4)} if i % 4 else {}),
                    **({"tools": ["zeta", "alpha", f"tool-{i % 3}"]} if i % 6 else {}),
                    **({"is_active": False} if i % 11 == 0 else {}),
                }
            )
            for i in range(GENERATED["Agent"])
        )
    )
    await asyncio.gather(
        *(
            api.policies.create(
                {
                    "name": f"policy-{i:03d}",
                    "effect": "deny" if i % 2 else "allow",
                    "resource_type": ("deployment", "agent", "pipeline")[i % 3],
                    "actions": ["update", "delete"] if i % 2 else ["create"],
                    **({"description": "Generated policy"} if i % 3 == 0 else {}),
                    **(
                        {
                            "conditions": [
                                {"attribute": "environment", "operator": "eq", "value": "prod"},
                                {"attribute": "tier", "operator": "in", "value": [1, 2]},
                            ]
                        }
                        if i % 4 == 0
                        else {}
                    ),
                }
            )
            for i in range(GENERATED["Policy"])
        )
    )
    pipelines = await asyncio.gather(
        *(
            api.pipelines.create(
                {
                    "name": f"pipeline-{i:03d}",
                    "pattern": ("sequential", "supervisor_worker", "router")[i % 3],
                    **({"status": ("active", "archived")[i % 2]} if i % 3 else {}),
                    **({"config": {"max_rounds": i % 5, "mode": "fast"}} if i % 4 else {}),
                }
            )
            for i in range(GENERATED["Pipeline"])
        )
    )

    async def wire(i: int) -> None:
        pipeline = pipelines[i]
        if i % 9 == 8:
            return  # an empty pipeline
        lead, worker = agents[(2 * i) % len(agents)], agents[(2 * i + 1) % len(agents)]
        nodes = [
            GraphNode(id="lead", node_type="supervisor", agent_id=lead.id, x=0),
            GraphNode(
                id="worker.1",
                node_type="agent",
                agent_id=worker.id,
                config={"retries": i % 3},
                x=250.5,
                y=40,
            ),
            GraphNode(id="route", node_type="router", x=500, y=-80),
        ]
        edges = [
            GraphEdge(source="lead", target="worker.1"),
            GraphEdge(
                source="worker.1",
                target="route",
                source_handle="out" if i % 2 else None,
                target_handle="in" if i % 2 else None,
            ),
        ]
        await api.pipelines.put_graph(pipeline.id, Graph(nodes=nodes, edges=edges))

    await asyncio.gather(*(wire(i) for i in range(len(pipelines))))

    async def deploy(i: int) -> None:
        pipeline = pipelines[i]
        environment = ("development", "staging", "production")[i % 3]
        started = await api.deployments.deploy(pipeline.id, environment)
        await api.deployments.wait_settled(started.id, timeout=30)
        if i % 4 == 0:
            # The pipeline moves on after the deploy: the slot runs an older, pinned version.
            await api.pipelines.update(pipeline.id, {"description": "changed after deploy"})

    await asyncio.gather(*(deploy(i) for i in range(GENERATED["Deployment"])))


def test_export_of_200_generated_resources_plans_no_changes(gitops: GitOps, tmp_path: Path) -> None:
    assert sum(GENERATED.values()) == 200
    gitops.with_api(_generate)

    async def hand_made_extras(api: KaizenApi) -> None:
        await api.agents.create(
            {"name": "Billing Bot", "system_prompt": "x", "provider": "openai", "model": "m"}
        )

    gitops.with_api(hand_made_extras)
    out = tmp_path / "exported"
    gitops.server.clear_request_log()
    started = time.monotonic()
    exported = gitops.cli("export", "--out", str(out))
    export_seconds = time.monotonic() - started
    export_requests = len(gitops.server.request_log())

    assert exported.code == 0, exported.err
    assert "Agent/Billing Bot" in exported.err
    assert "not a manifest name" in exported.err
    counts = {
        folder: len(list((out / folder).glob("*.yaml")))
        for folder in ("agents", "pipelines", "policies", "deployments")
    }
    assert counts == {"agents": 90, "pipelines": 45, "policies": 50, "deployments": 15}
    pinned = [
        yaml.safe_load(p.read_text())["spec"]["version"]
        for p in (out / "deployments").glob("*.yaml")
    ]
    assert pinned.count("latest") == 11
    assert sorted(v for v in pinned if v != "latest") == [1, 2, 2, 2]  # pipeline-008 has no graph
    literal = yaml.safe_load((out / "agents" / "agent-000.yaml").read_text())
    assert "$${NOT_A_VARIABLE}" in literal["spec"]["system_prompt"]

    gitops.server.clear_request_log()
    started = time.monotonic()
    planned = gitops.cli("plan", str(out), "--detailed-exitcode", "--format", "json")
    plan_seconds = time.monotonic() - started
    plan_requests = len(gitops.server.request_log())

    assert planned.code == 0, planned.out + planned.err
    report = json.loads(planned.out)
    assert report["actions"] == []
    assert [(u["kind"], u["name"]) for u in report["unmanaged"]] == [("Agent", "Billing Bot")]
    print(
        f"\nexport: {export_seconds:.2f} s, {export_requests} requests; "
        f"plan: {plan_seconds:.2f} s, {plan_requests} requests"
    )


def test_export_never_writes_or_deletes_through_a_symlink(gitops: GitOps, tmp_path: Path) -> None:
    gitops.with_api(
        lambda api: api.agents.create(
            {"name": "triage", "system_prompt": "p", "provider": "openai", "model": "m"}
        )
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "triage.yaml"
    precious.write_text("not export's to touch\n")
    out = tmp_path / "exported"
    out.mkdir()
    (out / "agents").symlink_to(Path("..") / "outside")

    for force in ((), ("--force",)):
        refused = gitops.cli("export", "--out", str(out), *force)
        assert refused.code == 1, refused.out + refused.err
        assert f"{out}/agents is a symlink (to ../outside)" in refused.err
        assert precious.read_text() == "not export's to touch\n"

    # A symlinked file is refused the same way, even where the folder is real.
    (out / "agents").unlink()
    (out / "agents").mkdir()
    (out / "agents" / "triage.yaml").symlink_to(precious)
    refused = gitops.cli("export", "--out", str(out))
    assert refused.code == 1
    assert precious.read_text() == "not export's to touch\n"
    forced = gitops.cli("export", "--out", str(out), "--force")  # replaces the link, not its target
    assert forced.code == 0, forced.err
    assert precious.read_text() == "not export's to touch\n"
    assert not (out / "agents" / "triage.yaml").is_symlink()
    assert "name: triage" in (out / "agents" / "triage.yaml").read_text()
