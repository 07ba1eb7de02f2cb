"""The registry of manifest kinds: the one place that declares a kind.

Each ``KindInfo`` says what a kind is (its spec model, identity, compared
fields and checks), how it is served (``service``: list, create, update,
delete through ``kaizenctl.api.service``; ``graph``: a node graph read and
written with it), what it references and its rank. Every stage reads this
table: the loader, validation and JSON Schemas; live fetch (one list per
served kind, names unique); diff (compared fields, the action order); apply
(which service carries an action); prune; fingerprints and export. None of
them names a kind in a tuple or keeps a dict of services.

Order is derived, never written by hand (Kong decK's ``pkg/diff/order.go``):
``create_order`` sorts the kinds so that each comes after what it references
(ties by rank); ``delete_order`` is that table reversed. At the level of
single actions the same references give the edges: a write of a reference
waits for the referenced resource's writes, and a delete waits until every
live holder of a reference to it has let go (been deleted, or rewritten the
field). A kind with no ``service`` is planned and run by its own stage code:
``Deployment`` (deploy, promote, rollback, undeploy: ``reconcile.diff`` and
``reconcile.apply``; agents on gateways: ``reconcile.rollout``) and ``Gateway``
(``reconcile.rollout``).

Adding a named kind is: its spec model (``manifests/models.py``, with the
``Spec`` union there), its entry here, its API model and service in each
dialect that serves it (``api/models.py``, the dialect module, a property on
``KaizenApi``), its regenerated JSON Schemas (``schemas/``), and its tests.
The stages themselves do not change (``tests/reconcile/test_new_kind.py`` runs
a test-only kind through all of them). A kind with a graph, or one without a
named service, also needs the stage code that ``graph`` / ``service=None``
select.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kaizenctl.api.service import GraphService, KaizenApi, NamedObjectService
from kaizenctl.manifests.checks import (
    Problem,
    ResourceIndex,
    api_key_from_variable,
    deployment_identity,
    deployment_target,
    gateway_choice,
    pipeline_graph,
    policy_conditions,
    promotion_source_exists,
)
from kaizenctl.manifests.models import (
    AgentSpec,
    DeploymentSpec,
    GatewaySpec,
    ManifestModel,
    PipelineSpec,
    PolicySpec,
    Resource,
    Spec,
)

if TYPE_CHECKING:
    from kaizenctl.reconcile.state import State


def _no_live_holders(state: State) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Reference:
    """A spec field that names another resource by ``metadata.name``."""

    kind: str
    # Returns every (dotted field path, referenced name) in a spec.
    names: Callable[[Spec], list[tuple[str, str]]]
    # The verbs of the referring resource's actions that write this field: they wait
    # for the referenced resource's writes.
    written_by: tuple[str, ...] = ("create", "update")
    # Every (holder identity, referenced name) in live state.
    live_holders: Callable[[State], Iterable[tuple[str, str]]] = _no_live_holders
    # The verbs of a holder that stays whose action lets go of the reference
    # (besides its delete); a delete of the referenced resource waits for them.
    released_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class KindInfo:
    kind: str
    spec_model: type[ManifestModel]
    # Breaks ties in create order between kinds that do not reference each other: lower
    # ranks are created first and deleted last. References always win over rank.
    rank: int
    # Lower-case plural: the export folder and how listings are counted ("agents").
    plural: str
    references: tuple[Reference, ...] = ()
    # How a resource of this kind is identified; by name unless told otherwise.
    identity: Callable[[Resource], str] = field(default=lambda resource: resource.name)
    # Spec fields that are also the API object's own fields, compared one to one by plan,
    # patched by apply and written by export (graphs and references are handled apart).
    fields: tuple[str, ...] = ()
    # Of those, the lists whose order means nothing (CONTRACT: `tools`, `actions`).
    set_fields: frozenset[str] = frozenset()
    # What the identity means, for messages ("pipeline and environment"); None = the name.
    identity_label: str | None = None
    # Checks within one spec that a model cannot express (run by ``validate``).
    checks: tuple[Callable[[Spec], list[Problem]], ...] = ()
    # Checks that need the rest of the manifest set.
    set_checks: tuple[Callable[[Resource, ResourceIndex], list[Problem]], ...] = ()
    # The service of a named kind (listed, created, updated, deleted by name); None for a
    # slot kind, which its own stage code handles.
    service: Callable[[KaizenApi], NamedObjectService] | None = None
    # A kind whose objects carry a node graph: read, diffed and written as one
    # ``replace-graph`` action (nodes reference ``graph_node_kind`` by name).
    graph: Callable[[KaizenApi], GraphService] | None = None
    graph_node_kind: str | None = None
    # The server counts versions of this kind's objects (a deployment runs one).
    versioned: bool = False
    # The verbs that write a resource of this kind; what references it waits for them.
    write_verbs: tuple[str, ...] = ("create", "update")


def _node_agents(spec: Spec) -> list[tuple[str, str]]:
    assert isinstance(spec, PipelineSpec)
    return [
        (f"nodes[{index}].agent", node.agent)
        for index, node in enumerate(spec.nodes)
        if node.agent is not None
    ]


def _deployment_pipeline(spec: Spec) -> list[tuple[str, str]]:
    assert isinstance(spec, DeploymentSpec)
    return [("pipeline", spec.pipeline)] if spec.pipeline is not None else []


def _deployment_agent(spec: Spec) -> list[tuple[str, str]]:
    assert isinstance(spec, DeploymentSpec)
    return [("agent", spec.agent)] if spec.agent is not None else []


def _deployment_gateway(spec: Spec) -> list[tuple[str, str]]:
    assert isinstance(spec, DeploymentSpec)
    return [("gateway", spec.gateway)] if spec.gateway is not None else []


def _deployment_identity(resource: Resource) -> str:
    spec = resource.spec
    assert isinstance(spec, DeploymentSpec)
    return deployment_identity(spec.target, spec.environment)


def _live_graph_agents(state: State) -> list[tuple[str, str]]:
    return [
        (name, agent)
        for name, pipeline in state.of_kind("Pipeline").items()
        if pipeline.graph is not None
        for agent in sorted(pipeline.graph.agent_names())
    ]


def _live_deployed_pipelines(state: State) -> list[tuple[str, str]]:
    # A slot whose deployments all stopped or failed holds nothing.
    return [
        (key, slot.pipeline) for key, slot in sorted(state.deployments.items()) if slot.running_ids
    ]


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "Agent",
            AgentSpec,
            rank=0,
            plural="agents",
            fields=(
                "description",
                "system_prompt",
                "provider",
                "model",
                "temperature",
                "max_tokens",
                "tools",
                "is_active",
                "agent_type",
            ),
            set_fields=frozenset({"tools"}),
            service=lambda api: api.agents,
        ),
        KindInfo(
            "Policy",
            PolicySpec,
            rank=0,
            plural="policies",
            checks=(policy_conditions,),
            fields=("description", "effect", "resource_type", "actions", "conditions"),
            set_fields=frozenset({"actions"}),
            service=lambda api: api.policies,
        ),
        KindInfo(
            "Pipeline",
            PipelineSpec,
            rank=1,
            plural="pipelines",
            fields=("description", "pattern", "status", "config"),
            references=(
                Reference(
                    "Agent",
                    _node_agents,
                    written_by=("replace-graph",),
                    live_holders=_live_graph_agents,
                    released_by=("replace-graph",),
                ),
            ),
            checks=(pipeline_graph,),
            service=lambda api: api.pipelines,
            graph=lambda api: api.pipelines,
            graph_node_kind="Agent",
            versioned=True,
            write_verbs=("create", "update", "replace-graph"),
        ),
        KindInfo(
            "Gateway",
            GatewaySpec,
            rank=0,
            plural="gateways",
            # No named-object service: gateways exist only where agents are deployed onto
            # them, and their stage code (kaizenctl.reconcile.rollout) plans and applies them.
            # api_key is write-only: it is handled apart (never compared by value).
            fields=("api_url", "environment", "description", "health_check_url"),
            set_checks=(api_key_from_variable,),
        ),
        KindInfo(
            "Deployment",
            DeploymentSpec,
            rank=2,
            plural="deployments",
            references=(
                Reference(
                    "Pipeline",
                    _deployment_pipeline,
                    written_by=("deploy", "promote", "rollback"),
                    live_holders=_live_deployed_pipelines,
                ),
                # Agents on gateways (kaizenctl.reconcile.rollout plans their order itself).
                Reference("Agent", _deployment_agent, written_by=("deploy", "promote")),
                Reference("Gateway", _deployment_gateway, written_by=("deploy", "promote")),
            ),
            identity=_deployment_identity,
            identity_label="pipeline or agent, and environment",
            checks=(deployment_target,),
            set_checks=(promotion_source_exists, gateway_choice),
            write_verbs=("deploy", "promote", "rollback"),
        ),
    )
}

KIND_NAMES: tuple[str, ...] = tuple(KINDS)


def create_order(kinds: Mapping[str, KindInfo] = KINDS) -> tuple[str, ...]:
    """Kinds in create order: each after every kind it references; ties by rank, then name."""
    placed: list[str] = []
    waiting = dict(kinds)
    while waiting:
        ready = [
            info
            for info in waiting.values()
            if all(reference.kind in placed for reference in info.references)
        ]
        if not ready:
            unknown = sorted(
                {r.kind for info in waiting.values() for r in info.references} - set(kinds)
            )
            raise ValueError(
                f"the kinds {', '.join(sorted(waiting))} reference each other in a cycle"
                if not unknown
                else f"references to undeclared kinds: {', '.join(unknown)}"
            )
        chosen = min(ready, key=lambda info: (info.rank, info.kind))
        placed.append(chosen.kind)
        del waiting[chosen.kind]
    return tuple(placed)


def delete_order(kinds: Mapping[str, KindInfo] = KINDS) -> tuple[str, ...]:
    """The create order reversed: what references a kind goes before it."""
    return tuple(reversed(create_order(kinds)))


def referrers(kind: str, kinds: Mapping[str, KindInfo] = KINDS) -> list[tuple[KindInfo, Reference]]:
    """Every (kind, reference) that points at ``kind``, in create order."""
    return [
        (kinds[name], reference)
        for name in create_order(kinds)
        for reference in kinds[name].references
        if reference.kind == kind
    ]


def named_kinds(kinds: Mapping[str, KindInfo] = KINDS) -> list[KindInfo]:
    """The kinds served by a named-object service, in create order."""
    return [kinds[name] for name in create_order(kinds) if kinds[name].service is not None]


# Computed once: the registry is fixed at import, and a bad table fails here, at import.
CREATE_ORDER = create_order(KINDS)
