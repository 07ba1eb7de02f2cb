"""Fetch live state through the service layer, concurrently, and normalize it.

Requests: one paged list per kind of the registry (``kaizenctl.kinds``) that the
dialect serves (its capability table), then
the graph (nodes and connections) of each object of a kind with a graph, only
for those in scope — the minimum the contract allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kaizenctl.api.gateways import rollout_services
from kaizenctl.api.models import Agent, Deployment, PipelineConnection, PipelineNode
from kaizenctl.api.records import ServerRecord, is_record_name
from kaizenctl.api.service import KaizenApi, NamedObject, NamedObjectService
from kaizenctl.errors import PlanError
from kaizenctl.kinds import KINDS, KindInfo, named_kinds
from kaizenctl.ownership.inventory import OwnershipView, ownership_view
from kaizenctl.reconcile.rollout import RolloutLive
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
    # Kind -> every object its service listed (named kinds of the registry).
    listed: dict[str, list[NamedObject]]
    deployments: list[Deployment]
    # Graphs read, by object id.
    nodes: dict[str, list[PipelineNode]] = field(default_factory=dict)
    connections: dict[str, list[PipelineConnection]] = field(default_factory=dict)
    # None: the server has no gateways (agents are not deployed onto gateways there).
    rollout: RolloutLive | None = None
    # Who owns what, as the plan's set sees it (None: read without a set, e.g. export).
    ownership: OwnershipView | None = None
    # kaizenctl's own records (inventories and locks of every set), when read.
    records: list[ServerRecord] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[NamedObject]:
        return self.listed.get(kind, [])

    def names_by_id(self, kind: str) -> dict[str, str]:
        return {item.id: item.name for item in self.of_kind(kind)}


def _check_unique(kind: str, items: Iterable[NamedObject]) -> None:
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
                position=(node.x, node.y),
            )
            for node in nodes
        },
        edges=frozenset(
            EdgeKey(c.source, c.target, c.source_handle, c.target_handle) for c in connections
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
    set_name: str | None = None,
) -> LiveSnapshot:
    """Read every list concurrently, then the graphs of the objects in scope.

    kaizenctl's own records never appear among the resources; with ``set_name``
    they are read too and the snapshot says who owns what.
    """

    async def no_records() -> list[ServerRecord]:
        return []

    # A kind the dialect does not serve has nothing to list: it is not asked for.
    served = api.capabilities.kinds
    kinds = [info for info in named_kinds() if info.kind in served]
    lists, deployments, records = await asyncio.gather(
        asyncio.gather(*(_service(info, api).list_all() for info in kinds)),
        api.deployments.list_all(),
        api.records.list_all() if set_name is not None else no_records(),
    )
    listed: dict[str, list[NamedObject]] = {}
    for info, items in zip(kinds, lists, strict=True):
        resources = [item for item in items if not is_record_name(item.name)]
        _check_unique(info.kind, resources)
        listed[info.kind] = resources
    snapshot = LiveSnapshot(state=State(), listed=listed, deployments=deployments)
    graphs = [info for info in kinds if info.graph is not None]
    scoped = [
        (info, item)
        for info in graphs
        for item in listed[info.kind]
        if pipelines_in_scope(item.name)
    ]
    read = await asyncio.gather(*(_read_graph(info, api, item.id) for info, item in scoped))
    for (_info, item), (nodes, connections) in zip(scoped, read, strict=True):
        snapshot.nodes[item.id] = nodes
        snapshot.connections[item.id] = connections

    state = snapshot.state
    for info in kinds:
        node_names = snapshot.names_by_id(info.graph_node_kind) if info.graph_node_kind else {}
        for item in listed[info.kind]:
            graph: GraphState | None = None
            if item.id in snapshot.nodes:
                graph = live_graph(
                    snapshot.nodes[item.id], snapshot.connections[item.id], node_names
                )
            state.add(
                ObjectState(
                    info.kind,
                    item.name,
                    object_fields(info.kind, item),
                    live_id=item.id,
                    graph=graph,
                    version=_version(item) if info.versioned else None,
                )
            )
    deployed = KINDS["Deployment"].references[0].kind
    state.deployments = deployment_slots(deployments, snapshot.names_by_id(deployed))
    agents = [item for item in snapshot.of_kind("Agent") if isinstance(item, Agent)]
    snapshot.rollout = await fetch_rollout(api, agents)
    for gateway in snapshot.rollout.gateways if snapshot.rollout else []:
        # Listed so the delete-everything guard counts them; compared by the rollout planner.
        state.add(ObjectState("Gateway", gateway.name, {}, live_id=gateway.id))
    if set_name is not None:
        snapshot.records = records
        live_ids = {
            info.kind: {
                name: item.live_id
                for name, item in state.of_kind(info.kind).items()
                if item.live_id is not None
            }
            for info in kinds
        }
        snapshot.ownership = ownership_view(set_name, records, live_ids)
    return snapshot


async def fetch_rollout(api: KaizenApi, agents: list[Agent]) -> RolloutLive | None:
    """Gateways, agent deployments, promotions and the versions of deployed agents."""
    services = rollout_services(api)
    if services is None:
        return None
    gateways, deployments, promotions = await asyncio.gather(
        services.gateways.list_all(),
        services.agent_deployments.list_all(),
        services.promotions.list_all(),
    )
    deployed = sorted({d.agent_id for d in deployments} & {a.id for a in agents})
    versions = await asyncio.gather(*(api.agents.list_versions(agent_id) for agent_id in deployed))
    return RolloutLive(
        gateways=gateways,
        deployments=deployments,
        promotions=promotions,
        versions=dict(zip(deployed, versions, strict=True)),
    )


def _service(info: KindInfo, api: KaizenApi) -> NamedObjectService:
    assert info.service is not None
    return info.service(api)


async def _read_graph(
    info: KindInfo, api: KaizenApi, item_id: str
) -> tuple[list[PipelineNode], list[PipelineConnection]]:
    assert info.graph is not None
    service = info.graph(api)
    nodes, connections = await asyncio.gather(
        service.get_nodes(item_id), service.get_connections(item_id)
    )
    return nodes, connections


def _version(item: NamedObject) -> int | None:
    version = getattr(item, "version", None)
    return version if isinstance(version, int) else None
