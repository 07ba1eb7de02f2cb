"""Desired and live state as one comparable type.

Both sides become ``State`` before anything is compared (decK's lesson): the
diff never sees YAML or HTTP. References are by name on both sides; server-owned
fields, server defaults and list order are taken out here, so that a freshly
applied set compares equal against any server that follows CONTRACT.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from kaizenctl.kinds import KINDS
from kaizenctl.manifests.models import DeploymentSpec, PipelineSpec, Resource

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
    """One resource of a named kind, normalized. ``live_id`` is None on the desired side."""

    kind: str
    name: str
    fields: Fields
    live_id: str | None = None
    graph: GraphState | None = None
    # Versioned kinds only (``KindInfo.versioned``): the server's version counter (live side).
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
    # Desired side: deployments of agents onto gateways, by "agent/environment".
    agent_deployment_specs: dict[str, Resource] = field(default_factory=dict)

    def of_kind(self, kind: str) -> Mapping[str, ObjectState]:
        """This side's resources of ``kind`` by name (read-only; reading changes nothing)."""
        return MappingProxyType(self.objects.get(kind, {}))

    def add(self, item: ObjectState) -> None:
        self.objects.setdefault(item.kind, {})[item.name] = item


def comparable(value: Any) -> Any:
    """A field's value as plain data: nested models (policy conditions) become dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def object_fields(kind: str, source: object) -> Fields:
    """The compared fields of a spec or of a live API object: the same names on both sides."""
    info = KINDS[kind]
    fields: Fields = {}
    for name in info.fields:
        value = comparable(getattr(source, name))
        # Sets (`tools`, `actions`) compare sorted and deduplicated.
        fields[name] = sorted(set(value)) if name in info.set_fields else value
    return fields


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
        info = KINDS[resource.kind]
        if isinstance(spec, DeploymentSpec):
            # A slot kind: kept as written, by its identity; agents on gateways apart.
            specs = state.agent_deployment_specs if spec.agent else state.deployment_specs
            specs[info.identity(resource)] = resource
        else:
            state.add(
                ObjectState(
                    resource.kind,
                    resource.name,
                    object_fields(resource.kind, spec),
                    graph=pipeline_graph(spec) if isinstance(spec, PipelineSpec) else None,
                    resource=resource,
                )
            )
    return state
