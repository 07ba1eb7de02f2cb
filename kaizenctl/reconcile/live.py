"""Fetch live state through the service layer, concurrently, and normalize it.

Requests: one paged list per kind, then nodes and connections per pipeline
(only for the pipelines in scope) — the minimum the contract allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kaizenctl.api.models import (
    Agent,
    Deployment,
    Pipeline,
    PipelineConnection,
    PipelineNode,
    Policy,
)
from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import PlanError
from kaizenctl.reconcile.state import (
    DeploymentSlot,
    EdgeKey,
    GraphState,
    NodeState,
    ObjectState,
    State,
    object_fields,
)

RUNNING_STATUSES = frozenset({"pending", "deploying", "active"})


@dataclass
class LiveSnapshot:
    """Raw live objects as read, plus the normalized ``State`` built from them."""

    state: State
    agents: list[Agent]
    pipelines: list[Pipeline]
    policies: list[Policy]
    deployments: list[Deployment]
    nodes: dict[str, list[PipelineNode]] = field(default_factory=dict)
    connections: dict[str, list[PipelineConnection]] = field(default_factory=dict)
    agent_names_by_id: dict[str, str] = field(default_factory=dict)
    pipeline_names_by_id: dict[str, str] = field(default_factory=dict)


def _check_unique(kind: str, items: Iterable[Agent | Pipeline | Policy]) -> None:
    """Refuse to guess when a server holds two resources of one kind with one name."""
    ids_by_name: dict[str, list[str]] = {}
    for item in items:
        ids_by_name.setdefault(item.name, []).append(item.id)
    duplicated = {name: ids for name, ids in ids_by_name.items() if len(ids) > 1}
    if duplicated:
        details = "; ".join(
            f"{kind}/{name} has ids {', '.join(ids)}" for name, ids in sorted(duplicated.items())
        )
        raise PlanError(
            f"live state holds more than one {kind} with the same name ({details}); "
            "kaizenctl identifies resources by name and will not guess: "
            "delete or rename the extra ones in the platform first"
        )


def unknown_agent_label(agent_id: str) -> str:
    """How a node's reference to an agent that is not in the live list is shown."""
    return f"<unknown agent id {agent_id}>"


def live_graph(
    nodes: list[PipelineNode],
    connections: list[PipelineConnection],
    agent_names_by_id: dict[str, str],
) -> GraphState:
    return GraphState(
        nodes={
            node.id: NodeState(
                node_type=node.node_type,
                agent=(
                    agent_names_by_id.get(node.agent_id, unknown_agent_label(node.agent_id))
                    if node.agent_id
                    else None
                ),
                config=node.config,
                position=(node.position_x, node.position_y),
            )
            for node in nodes
        },
        edges=frozenset(
            EdgeKey(c.source_node_id, c.target_node_id, c.source_handle, c.target_handle)
            for c in connections
        ),
    )


def _replaced_version(active: Deployment, history: list[Deployment]) -> int | None:
    """Best knowledge of the version a rollback of ``active`` reaches.

    The contract does not expose which deployment an active one replaced; the
    most recent earlier deployment of the slot that ended ``stopped`` is the one
    it replaced when the slot was not undeployed in between. The server remains
    the judge: a rollback it refuses fails with its reason.
    """
    earlier = [
        d
        for d in history
        if d.id != active.id
        and d.status == "stopped"
        and (d.created_at, d.id)
        < (
            active.created_at,
            active.id,
        )
    ]
    if not earlier:
        return None
    return max(earlier, key=lambda d: (d.created_at, d.id)).pipeline_version


def deployment_slots(
    deployments: list[Deployment], pipeline_names_by_id: dict[str, str]
) -> dict[str, DeploymentSlot]:
    by_slot: dict[tuple[str, str], list[Deployment]] = {}
    for deployment in deployments:
        by_slot.setdefault((deployment.pipeline_id, deployment.environment), []).append(deployment)
    slots: dict[str, DeploymentSlot] = {}
    for (pipeline_id, environment), history in by_slot.items():
        pipeline_name = pipeline_names_by_id.get(pipeline_id)
        if pipeline_name is None:
            continue  # a deployment of a pipeline that no longer exists
        history.sort(key=lambda d: (d.created_at, d.id))
        active = [d for d in history if d.status == "active"]
        in_flight = [d for d in history if d.status in ("pending", "deploying")]
        running = [d for d in history if d.status in RUNNING_STATUSES]
        current = active[-1] if active else None
        latest_in_flight = in_flight[-1] if in_flight else None
        slots[f"{pipeline_name}/{environment}"] = DeploymentSlot(
            pipeline=pipeline_name,
            environment=environment,
            active_id=current.id if current else None,
            active_version=current.pipeline_version if current else None,
            replaced_version=_replaced_version(current, history) if current else None,
            in_flight_id=latest_in_flight.id if latest_in_flight else None,
            in_flight_version=latest_in_flight.pipeline_version if latest_in_flight else None,
            running_ids=tuple(d.id for d in running),
        )
    return slots


async def fetch_live(
    api: KaizenApi,
    *,
    pipelines_in_scope: Callable[[str], bool] = lambda name: True,
) -> LiveSnapshot:
    """Read every list concurrently, then the graphs of the pipelines in scope."""
    agents, pipelines, policies, deployments = await asyncio.gather(
        api.agents.list_all(),
        api.pipelines.list_all(),
        api.policies.list_all(),
        api.deployments.list_all(),
    )
    _check_unique("Agent", agents)
    _check_unique("Pipeline", pipelines)
    _check_unique("Policy", policies)
    agent_names_by_id = {agent.id: agent.name for agent in agents}
    pipeline_names_by_id = {pipeline.id: pipeline.name for pipeline in pipelines}

    scoped = [p for p in pipelines if pipelines_in_scope(p.name)]
    graphs = await asyncio.gather(
        *(
            asyncio.gather(api.pipelines.get_nodes(p.id), api.pipelines.get_connections(p.id))
            for p in scoped
        )
    )
    snapshot = LiveSnapshot(
        state=State(),
        agents=agents,
        pipelines=pipelines,
        policies=policies,
        deployments=deployments,
        agent_names_by_id=agent_names_by_id,
        pipeline_names_by_id=pipeline_names_by_id,
    )
    state = snapshot.state
    for agent in agents:
        state.of_kind("Agent")[agent.name] = ObjectState(
            "Agent", agent.name, object_fields("Agent", agent), live_id=agent.id
        )
    for policy in policies:
        state.of_kind("Policy")[policy.name] = ObjectState(
            "Policy", policy.name, object_fields("Policy", policy), live_id=policy.id
        )
    graph_by_id = {p.id: graph for p, graph in zip(scoped, graphs, strict=True)}
    for pipeline in pipelines:
        graph: GraphState | None = None
        if pipeline.id in graph_by_id:
            nodes, connections = graph_by_id[pipeline.id]
            snapshot.nodes[pipeline.id] = nodes
            snapshot.connections[pipeline.id] = connections
            graph = live_graph(nodes, connections, agent_names_by_id)
        state.of_kind("Pipeline")[pipeline.name] = ObjectState(
            "Pipeline",
            pipeline.name,
            object_fields("Pipeline", pipeline),
            live_id=pipeline.id,
            graph=graph,
            version=pipeline.version,
        )
    state.deployments = deployment_slots(deployments, pipeline_names_by_id)
    return snapshot
