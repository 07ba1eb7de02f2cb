"""Desired and live state as one comparable type.

Both sides become ``State`` before anything is compared (decK's lesson): the
diff never sees YAML or HTTP. References are by name on both sides; server-owned
fields, server defaults and list order are taken out here, so that a freshly
applied set compares equal against any server that follows CONTRACT.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaizenctl.manifests.models import (
    AgentSpec,
    DeploymentSpec,
    PipelineSpec,
    PolicySpec,
    Resource,
)

Fields = dict[str, Any]


@dataclass(frozen=True)
class NodeState:
    node_type: str
    agent: str | None
    config: dict[str, Any]
    # None on the desired side means "left to the platform's editor".
    position: tuple[float, float] | None


@dataclass(frozen=True, order=True)
class EdgeKey:
    source: str
    target: str
    source_handle: str | None = None
    target_handle: str | None = None

    def label(self) -> str:
        handles = ""
        if self.source_handle or self.target_handle:
            handles = f" [{self.source_handle or ''}→{self.target_handle or ''}]"
        return f"{self.source} → {self.target}{handles}"


@dataclass(frozen=True)
class GraphState:
    nodes: dict[str, NodeState] = field(default_factory=dict)
    edges: frozenset[EdgeKey] = frozenset()

    def agent_names(self) -> set[str]:
        return {node.agent for node in self.nodes.values() if node.agent is not None}


@dataclass(frozen=True)
class ObjectState:
    """One agent, pipeline or policy, normalized. ``live_id`` is None on the desired side."""

    kind: str
    name: str
    fields: Fields
    live_id: str | None = None
    graph: GraphState | None = None
    # Pipelines only: the server's version counter (live side).
    version: int | None = None
    resource: Resource | None = None


@dataclass(frozen=True)
class DeploymentSlot:
    """Live deployments of one (pipeline, environment)."""

    pipeline: str
    environment: str
    active_id: str | None = None
    active_version: int | None = None
    # The version a rollback of the active deployment would reach, if known.
    replaced_version: int | None = None
    # A pending/deploying deployment, if any: its id and version.
    in_flight_id: str | None = None
    in_flight_version: int | None = None
    # Every deployment id of this slot that is not stopped/failed (undeploy targets).
    running_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.pipeline}/{self.environment}"


@dataclass
class State:
    """All resources of one side, by kind and identity."""

    objects: dict[str, dict[str, ObjectState]] = field(default_factory=dict)
    deployments: dict[str, DeploymentSlot] = field(default_factory=dict)
    # Desired side: deployment manifests by "pipeline/environment".
    deployment_specs: dict[str, Resource] = field(default_factory=dict)

    def of_kind(self, kind: str) -> dict[str, ObjectState]:
        return self.objects.setdefault(kind, {})


def sort_set(values: list[str]) -> list[str]:
    """`tools` and `actions` are sets: compare them sorted, deduplicated."""
    return sorted(set(values))


def agent_fields(spec: AgentSpec) -> Fields:
    return {
        "description": spec.description,
        "system_prompt": spec.system_prompt,
        "provider": spec.provider,
        "model": spec.model,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "tools": sort_set(spec.tools),
        "is_active": spec.is_active,
    }


def pipeline_fields(spec: PipelineSpec) -> Fields:
    return {
        "description": spec.description,
        "pattern": spec.pattern,
        "status": spec.status,
        "config": spec.config,
    }


def policy_fields(spec: PolicySpec) -> Fields:
    return {
        "description": spec.description,
        "effect": spec.effect,
        "resource_type": spec.resource_type,
        "actions": sort_set(spec.actions),
        "conditions": [
            {"attribute": c.attribute, "operator": c.operator, "value": c.value}
            for c in spec.conditions
        ],
    }


def pipeline_graph(spec: PipelineSpec) -> GraphState:
    return GraphState(
        nodes={
            node.id: NodeState(
                node_type=node.node_type,
                agent=node.agent,
                config=node.config,
                position=(node.position.x, node.position.y) if node.position else None,
            )
            for node in spec.nodes
        },
        edges=frozenset(
            EdgeKey(edge.from_, edge.to, edge.source_handle, edge.target_handle)
            for edge in spec.edges
        ),
    )


def desired_state(resources: list[Resource]) -> State:
    state = State()
    for resource in resources:
        spec = resource.spec
        if isinstance(spec, AgentSpec):
            state.of_kind("Agent")[resource.name] = ObjectState(
                "Agent", resource.name, agent_fields(spec), resource=resource
            )
        elif isinstance(spec, PolicySpec):
            state.of_kind("Policy")[resource.name] = ObjectState(
                "Policy", resource.name, policy_fields(spec), resource=resource
            )
        elif isinstance(spec, PipelineSpec):
            state.of_kind("Pipeline")[resource.name] = ObjectState(
                "Pipeline",
                resource.name,
                pipeline_fields(spec),
                graph=pipeline_graph(spec),
                resource=resource,
            )
        elif isinstance(spec, DeploymentSpec):
            state.deployment_specs[f"{spec.pipeline}/{spec.environment}"] = resource
    return state
