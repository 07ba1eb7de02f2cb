"""Generate a manifest set of any size: agents, pipelines with graphs, policies, deployments.

Used by the benchmarks (``benchmarks.run``) and by the reliability tests, so
both exercise the same shapes. Every pipeline's nodes name agents and are
joined by edges (a supervisor fanning out to workers and back, so the graph
has cycles as real ones do); deployments walk whole promotion chains
(``development`` as ``version: latest``, then ``staging`` and ``production``
by ``promote_from``), which is what gives an apply its dependency depth.

    python -m benchmarks.generate OUT_DIR --agents 1000 --pipelines 100 --nodes 10 \
        --policies 100 --deployments 50
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENVIRONMENTS = ("development", "staging", "production")
PROVIDERS = ("openai", "anthropic", "azure", "ollama")
# Documents per file: big enough that a large set is not thousands of tiny files,
# small enough that one file stays readable.
DOCUMENTS_PER_FILE = 100


@dataclass(frozen=True)
class SetShape:
    """How many of each kind a generated set holds."""

    agents: int
    pipelines: int
    nodes_per_pipeline: int
    policies: int
    deployments: int

    @property
    def resources(self) -> int:
        return self.agents + self.pipelines + self.policies + self.deployments

    def deployment_slots(self) -> list[tuple[int, str]]:
        """(pipeline index, environment) of each deployment: whole chains, pipeline by pipeline."""
        if self.deployments and not self.pipelines:
            raise ValueError("deployments need at least one pipeline")
        slots: list[tuple[int, str]] = []
        for number in range(self.deployments):
            pipeline, step = divmod(number, len(ENVIRONMENTS))
            if pipeline >= self.pipelines:
                raise ValueError(
                    f"{self.deployments} deployments need {pipeline + 1} pipelines "
                    f"(3 environments each), only {self.pipelines} given"
                )
            slots.append((pipeline, ENVIRONMENTS[step]))
        return slots

    @property
    def chain_depth(self) -> int:
        """Deployments in the longest promotion chain (1 = deploy only)."""
        return min(self.deployments, len(ENVIRONMENTS))


def agent_name(prefix: str, index: int) -> str:
    return f"{prefix}-agent-{index}"


def pipeline_name(prefix: str, index: int) -> str:
    return f"{prefix}-pipeline-{index}"


def policy_name(prefix: str, index: int) -> str:
    return f"{prefix}-policy-{index}"


def _agent(prefix: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kaizen.io/v1",
        "kind": "Agent",
        "metadata": {"name": agent_name(prefix, index)},
        "spec": {
            "description": f"Generated agent {index}",
            "system_prompt": (
                f"You are agent {index}. Answer briefly, cite the knowledge base, "
                "and escalate anything about billing to a human."
            ),
            "provider": PROVIDERS[index % len(PROVIDERS)],
            "model": "gpt-4o-mini",
            "temperature": round((index % 10) / 10, 1),
            "max_tokens": 512 + index % 4 * 256,
            "tools": ["search_kb", "create_ticket"][: 1 + index % 2],
        },
    }


def _pipeline(prefix: str, index: int, shape: SetShape) -> dict[str, Any]:
    size = max(1, shape.nodes_per_pipeline)
    nodes: list[dict[str, Any]] = []
    for position in range(size):
        # Spread the references over all agents so every agent is a dependency of something.
        agent_index = (index * size + position) % max(1, shape.agents)
        node: dict[str, Any] = {
            "id": "lead" if position == 0 else f"worker-{position}",
            "node_type": "supervisor" if position == 0 else "agent",
        }
        if shape.agents:
            node["agent"] = agent_name(prefix, agent_index)
        else:
            node["node_type"] = "connector" if position else "router"
        if position:
            node["config"] = {"weight": position}
            node["position"] = {"x": 200 * position, "y": 100}
        nodes.append(node)
    edges: list[dict[str, Any]] = []
    for node in nodes[1:]:
        edges.append({"from": "lead", "to": node["id"]})
        edges.append({"from": node["id"], "to": "lead", "source_handle": "done"})
    return {
        "apiVersion": "kaizen.io/v1",
        "kind": "Pipeline",
        "metadata": {"name": pipeline_name(prefix, index)},
        "spec": {
            "description": f"Generated pipeline {index}",
            "pattern": "supervisor_worker",
            "status": "active",
            "config": {"max_rounds": 1 + index % 5},
            "nodes": nodes,
            "edges": edges,
        },
    }


def _policy(prefix: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kaizen.io/v1",
        "kind": "Policy",
        "metadata": {"name": policy_name(prefix, index)},
        "spec": {
            "description": f"Generated policy {index}",
            "effect": "deny" if index % 2 else "allow",
            "resource_type": "deployment",
            "actions": ["delete", "update"],
            "conditions": [
                {"attribute": "environment", "operator": "eq", "value": "production"},
                {"attribute": "name", "operator": "regex", "value": f"^{prefix}-{index}-.*$"},
            ],
        },
    }


def _deployment(prefix: str, pipeline: int, environment: str) -> dict[str, Any]:
    step = ENVIRONMENTS.index(environment)
    spec: dict[str, Any] = {"pipeline": pipeline_name(prefix, pipeline), "environment": environment}
    if step == 0:
        spec["version"] = "latest"
    else:
        spec["promote_from"] = ENVIRONMENTS[step - 1]
    return {
        "apiVersion": "kaizen.io/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{pipeline_name(prefix, pipeline)}-{environment}"},
        "spec": spec,
    }


def documents(shape: SetShape, prefix: str = "gen") -> dict[str, list[dict[str, Any]]]:
    """The documents of a set, by kind folder (``agents``, ``pipelines``, ...)."""
    return {
        "agents": [_agent(prefix, i) for i in range(shape.agents)],
        "pipelines": [_pipeline(prefix, i, shape) for i in range(shape.pipelines)],
        "policies": [_policy(prefix, i) for i in range(shape.policies)],
        "deployments": [_deployment(prefix, p, env) for p, env in shape.deployment_slots()],
    }


def write_set(folder: Path, shape: SetShape, prefix: str = "gen") -> Path:
    """Write the set as ``folder/<kind>/<kind>-NNN.yaml`` files; return ``folder``."""
    for kind, docs in documents(shape, prefix).items():
        if not docs:
            continue
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(docs), DOCUMENTS_PER_FILE):
            chunk = docs[start : start + DOCUMENTS_PER_FILE]
            text = yaml.safe_dump_all(chunk, sort_keys=False, default_flow_style=None)
            (folder / kind / f"{kind}-{start // DOCUMENTS_PER_FILE:03d}.yaml").write_text(text)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a generated manifest set.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--prefix", default="gen")
    options = parser.parse_args()
    shape = SetShape(
        options.agents, options.pipelines, options.nodes, options.policies, options.deployments
    )
    write_set(options.out, shape, options.prefix)
    print(f"wrote {shape.resources} manifests to {options.out}")


if __name__ == "__main__":
    main()
