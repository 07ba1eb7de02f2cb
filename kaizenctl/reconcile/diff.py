"""Build a ``Plan`` from desired and live state. Pure: no I/O, no printing.

Dependencies between actions are data (``Action.depends_on``), derived from
the registry's references (``kaizenctl.kinds``): an action that writes a
reference waits for the referenced resource's writes (agents → graphs →
deployments), deployments go development → staging → production; a delete
waits until every live holder of a reference to it has let go — been deleted
or rewritten the field — (deployments → pipelines → agents), so the server
never answers 409.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kaizenctl.api.models import ENVIRONMENTS, Agent
from kaizenctl.errors import PlanError
from kaizenctl.kinds import KINDS, KindInfo, named_kinds, referrers
from kaizenctl.manifests.models import DeploymentSpec, Resource
from kaizenctl.ownership.inventory import DEFAULT_SET
from kaizenctl.reconcile.layout import layered_positions
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.plan import (
    Action,
    ActionPayload,
    Adoption,
    AgentSlot,
    CreatePayload,
    DeletePayload,
    DrawnEdge,
    DrawnNode,
    FieldChange,
    GraphDrawing,
    GraphPayload,
    Plan,
    PlannedEdge,
    PlannedNode,
    SlotPayload,
    UndeployPayload,
    Unmanaged,
    UpdatePayload,
    Verb,
)
from kaizenctl.reconcile.rollout import RolloutPlanner, pruning_delete
from kaizenctl.reconcile.state import (
    DeploymentSlot,
    EdgeKey,
    GraphState,
    NodeState,
    ObjectState,
    State,
)

NodeMark = Literal["added", "removed", "changed", "same"]
EdgeMark = Literal["added", "removed", "same"]

# Servers may round floats (temperature 0.7 stored as a 32-bit float, say).
FLOAT_TOLERANCE = 1e-6

PRODUCTION = "production"
ALLOW_PRODUCTION_DELETE = "--allow-production-delete"
ALLOW_PRODUCTION_ROLLBACK = "--allow-production-rollback"


@dataclass(frozen=True)
class PlanOptions:
    # Delete what this set owns and no longer declares.
    prune: bool = False
    # Also delete what no set owns (made by hand): for an organization whose whole truth
    # is this set. Never what another set owns.
    prune_unmanaged: bool = False
    # The manifest set: whose ownership record the plan reads.
    set_name: str = DEFAULT_SET
    # "Kind/name" (Deployments: "Deployment/<metadata.name>"); empty means everything.
    targets: frozenset[str] = frozenset()
    allow_delete_all: bool = False
    # (kind, field) -> why the server cannot change it: a change replaces the resource.
    # Filled from the server's capability table by ``plan_async``.
    replace_on_change: Mapping[tuple[str, str], str] = field(default_factory=dict)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _plainly_equal(before: Any, after: Any) -> bool:
    """Equal as they are: the same JSON-like shape (text keys, plain scalars) and ``==``.

    A shortcut for the common case; False means "look closer", not "different"."""
    if type(before) is dict and type(after) is dict:
        return (
            len(before) == len(after)
            and all(type(key) is str and key in after for key in before)
            and all(_plainly_equal(value, after[key]) for key, value in before.items())
        )
    if type(before) is list and type(after) is list:
        return len(before) == len(after) and all(map(_plainly_equal, before, after))
    return type(before) in _PLAIN_SCALARS and type(after) in _PLAIN_SCALARS and before == after


_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def values_equal(before: Any, after: Any) -> bool:
    """Equal by value: 1 == 1.0, floats within tolerance, dicts by content."""
    if type(before) is str and type(after) is str:
        return before == after  # the common case, and exact
    # Most values of a plan with few changes are equal as they are: no JSON text needed.
    if _plainly_equal(before, after) or _canonical(before) == _canonical(after):
        return True
    # Imported here: deepdiff costs ~0.15 s of start-up, and only values whose JSON
    # differs (1 vs 1.0, float noise, real changes) ever reach it.
    from deepdiff import DeepDiff

    return not DeepDiff(
        before,
        after,
        ignore_numeric_type_changes=True,
        math_epsilon=FLOAT_TOLERANCE,
    )


def field_changes(
    desired: dict[str, Any], live: dict[str, Any], sensitive: frozenset[str]
) -> list[FieldChange]:
    return [
        FieldChange(
            field=name,
            before=live.get(name),
            after=value,
            sensitive=_is_sensitive(name, sensitive),
        )
        for name, value in desired.items()
        if not values_equal(live.get(name), value)
    ]


def _is_sensitive(path: str, sensitive: frozenset[str]) -> bool:
    return any(s == path or s.startswith((path + ".", path + "[")) for s in sensitive)


def _node_view(node: NodeState) -> dict[str, Any]:
    view: dict[str, Any] = {"node_type": node.node_type, "agent": node.agent, "config": node.config}
    if node.position is not None:
        view["position"] = {"x": node.position[0], "y": node.position[1]}
    return view


@dataclass(frozen=True)
class GraphDiff:
    changes: list[FieldChange]
    # True when nodes or edges change beyond positions: the pipeline version moves.
    behavioural: bool


def graph_diff(
    desired: GraphState,
    live: GraphState | None,
    sensitive: frozenset[str],
    node_paths: dict[str, str],
) -> GraphDiff:
    live = live or GraphState()
    changes: list[FieldChange] = []
    behavioural = False
    for node_id, node in desired.nodes.items():
        path = node_paths.get(node_id, f"nodes.{node_id}")
        was = live.nodes.get(node_id)
        if was is None:
            behavioural = True
            changes.append(
                FieldChange(
                    field=f"nodes.{node_id}",
                    after=_node_view(node),
                    sensitive=_is_sensitive(path, sensitive),
                )
            )
            continue
        same_behaviour = (
            was.node_type == node.node_type
            and was.agent == node.agent
            and values_equal(was.config, node.config)
        )
        same_position = node.position is None or (
            was.position is not None and values_equal(list(was.position), list(node.position))
        )
        if not same_behaviour:
            behavioural = True
        if not (same_behaviour and same_position):
            before = _node_view(was)
            after = _node_view(node)
            if node.position is None:
                before.pop("position", None)
            changes.append(
                FieldChange(
                    field=f"nodes.{node_id}",
                    before=before,
                    after=after,
                    sensitive=_is_sensitive(path, sensitive),
                )
            )
    for node_id, was in live.nodes.items():
        if node_id not in desired.nodes:
            behavioural = True
            changes.append(FieldChange(field=f"nodes.{node_id}", before=_node_view(was)))
    for edge in sorted(desired.edges - live.edges):
        behavioural = True
        changes.append(FieldChange(field="edges", after=edge.label()))
    for edge in sorted(live.edges - desired.edges):
        behavioural = True
        changes.append(FieldChange(field="edges", before=edge.label()))
    return GraphDiff(changes, behavioural)


def graph_payload(desired: GraphState, live: GraphState | None) -> GraphPayload:
    """The whole desired graph, to be written at once; agents still by name.

    A node without a position keeps its live one; a new one gets a layered layout.
    """
    live_nodes = live.nodes if live else {}
    layout = layered_positions(
        list(desired.nodes), ((edge.source, edge.target) for edge in desired.edges)
    )
    nodes = []
    for node_id, node in desired.nodes.items():
        position = node.position
        if position is None:
            was = live_nodes.get(node_id)
            position = was.position if was is not None and was.position else layout[node_id]
        nodes.append(
            PlannedNode(
                id=node_id,
                node_type=node.node_type,
                agent=node.agent,
                config=node.config,
                x=position[0],
                y=position[1],
            )
        )
    # An edge key and a planned edge say the same in the same words.
    edges = [
        PlannedEdge.model_validate(edge, from_attributes=True) for edge in sorted(desired.edges)
    ]
    return GraphPayload(nodes=tuple(nodes), edges=tuple(edges))


def graph_drawing(desired: GraphState, live: GraphState | None) -> GraphDrawing:
    """What a reviewer needs to draw the change: every node and edge, marked."""
    live = live or GraphState()

    def node_mark(node_id: str) -> NodeMark:
        if node_id not in live.nodes:
            return "added"
        if node_id not in desired.nodes:
            return "removed"
        was, now = live.nodes[node_id], desired.nodes[node_id]
        same = (
            was.node_type == now.node_type
            and was.agent == now.agent
            and values_equal(was.config, now.config)
        )
        return "same" if same else "changed"

    node_ids = list(desired.nodes) + [n for n in live.nodes if n not in desired.nodes]
    nodes = []
    for node_id in node_ids:
        node = desired.nodes.get(node_id) or live.nodes[node_id]
        was = live.nodes.get(node_id)
        nodes.append(
            DrawnNode(
                id=node_id,
                node_type=node.node_type,
                agent=node.agent,
                # A reviewer must see which agent a node leaves, not only the one it gets.
                agent_before=(
                    was.agent
                    if node_id in desired.nodes and was is not None and was.agent != node.agent
                    else None
                ),
                mark=node_mark(node_id),
            )
        )

    def edge(e: EdgeKey, mark: EdgeMark) -> DrawnEdge:
        handles = "→".join(h for h in (e.source_handle, e.target_handle) if h)
        return DrawnEdge(source=e.source, target=e.target, handles=handles, mark=mark)

    edges = [edge(e, "added" if e not in live.edges else "same") for e in sorted(desired.edges)]
    edges += [edge(e, "removed") for e in sorted(live.edges - desired.edges)]
    return GraphDrawing(nodes=tuple(nodes), edges=tuple(edges))


def action_id(verb: str, kind: str, name: str) -> str:
    return f"{verb}:{kind}/{name}"


def _source(resource: Resource | None) -> str | None:
    if resource is None:
        return None
    return f"{resource.source.file}:{resource.source.line}"


@dataclass
class _Builder:
    desired: State
    live: LiveSnapshot
    options: PlanOptions
    actions: dict[str, Action] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    unmanaged: list[Unmanaged] = field(default_factory=list)
    # Versioned (deployable) resource name -> the version it will have once this plan is
    # applied; and those whose version this plan moves.
    expected_versions: dict[str, int] = field(default_factory=dict)
    changed_versions: set[str] = field(default_factory=set)
    # Resources this plan deletes and creates again ("Kind/name"; a field the server cannot
    # change moved): every graph that names one is rewritten to point at the new one.
    replaced: set[str] = field(default_factory=set)
    adopt: list[Adoption] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def owners(self, kind: str, live_id: str | None) -> tuple[str, ...]:
        ownership = self.live.ownership
        if ownership is None or live_id is None:
            return ()
        return tuple(sorted(ownership.owners_of(kind, live_id)))

    def add(self, action: Action) -> None:
        self.actions[action.id] = action

    # ---- agents, policies, pipelines -------------------------------------------------

    def objects(self) -> None:
        for info in named_kinds():
            kind = info.kind
            desired = self.desired.of_kind(kind)
            live = self.live.state.of_kind(kind)
            for name, want in desired.items():
                have = live.get(name)
                if have is not None and not self._claim(want, have):
                    continue
                self._object(info, want, have)
            for name, have in live.items():
                if name not in desired:
                    assert have.live_id is not None
                    self.unmanaged.append(
                        Unmanaged(
                            kind=kind,
                            name=name,
                            live_id=have.live_id,
                            owners=self.owners(kind, have.live_id),
                        )
                    )

    def _claim(self, want: ObjectState, have: ObjectState) -> bool:
        """May this set manage the live resource it declares? Adopt it if nobody owns it."""
        assert have.live_id is not None
        owners = self.owners(want.kind, have.live_id)
        others = [o for o in owners if o != self.options.set_name]
        if others:
            where = f"{_source(want.resource)}: " if want.resource else ""
            self.errors.append(
                f"{where}{want.kind}/{want.name} is owned by set {', '.join(others)}, not by "
                f"set {self.options.set_name!r}: two sets declare it. Remove it from one of "
                "them, or move it (docs/ownership.md: moving a resource between sets)"
            )
            return False
        if not owners and self.live.ownership is not None:
            self.adopt.append(Adoption(kind=want.kind, name=want.name, live_id=have.live_id))
        return True

    def _object(self, info: KindInfo, want: ObjectState, have: ObjectState | None) -> None:
        kind = info.kind
        resource = want.resource
        sensitive = resource.sensitive_paths if resource else frozenset()
        # A graph names agents; they must exist (created or kept) before it is written.
        depends = _waits_for(info, resource, "replace-graph")
        if have is None:
            create = _write(
                "create",
                want,
                # A field left unset (None) is no change to a resource that does not exist yet.
                [
                    FieldChange(field=k, after=v, sensitive=_is_sensitive(k, sensitive))
                    for k, v in want.fields.items()
                    if v is not None
                ],
                CreatePayload(fields={"name": want.name, **want.fields}),
            )
            self.add(create)
            version = 1
            if want.graph is not None and (want.graph.nodes or want.graph.edges):
                self._graph(info, want, None, [*depends, create.id])
                version += 1
            if info.versioned:
                self.changed_versions.add(want.name)
                self.expected_versions[want.name] = version
            return

        changes = field_changes(want.fields, have.fields, sensitive)
        fixed = [
            self.options.replace_on_change[(kind, c.field)]
            for c in changes
            if (kind, c.field) in self.options.replace_on_change
        ]
        # (A resource with a graph is never replaced: its dependents would be lost.)
        if fixed and want.graph is None:
            self._replace(kind, want, have, changes, fixed[0])
            return
        if changes:
            update = _write(
                "update",
                want,
                changes,
                UpdatePayload(changes={c.field: c.after for c in changes}),
                live_id=have.live_id,
            )
            self.add(update)
        version = have.version or 1
        if changes:
            version += 1
        if want.graph is not None and self._graph(info, want, have, depends):
            version += 1
        if info.versioned:
            if version != (have.version or 1):
                self.changed_versions.add(want.name)
            self.expected_versions[want.name] = version

    def _replace(
        self,
        kind: str,
        want: ObjectState,
        have: ObjectState,
        changes: list[FieldChange],
        why: str,
    ) -> None:
        """Delete and create again: ``why`` says which field the server cannot change."""
        assert have.live_id is not None
        delete = _write(
            "delete",
            want,
            changes,
            DeletePayload(replace=True),
            live_id=have.live_id,
            summary=f"replace {kind}/{want.name}: delete it ({why})",
        )
        create = _write(
            "create",
            want,
            changes,
            CreatePayload(fields={"name": want.name, **want.fields}, replace=True),
            summary=f"replace {kind}/{want.name}: create it again",
            depends_on=(delete.id,),
        )
        self.add(delete)
        self.add(create)
        self.replaced.add(f"{kind}/{want.name}")

    def _graph(
        self, info: KindInfo, want: ObjectState, have: ObjectState | None, depends: list[str]
    ) -> bool:
        """Plan a graph replacement if the graphs differ; True when the version will move."""
        assert want.graph is not None
        resource = want.resource
        sensitive = resource.sensitive_paths if resource else frozenset()
        node_paths = (
            {node_id: f"nodes[{i}]" for i, node_id in enumerate(want.graph.nodes)}
            if resource
            else {}
        )
        live_graph = have.graph if have else None
        diff = graph_diff(want.graph, live_graph, sensitive, node_paths)
        if live_graph is not None:
            # A replaced agent has a new id: nodes naming it must be written again.
            repointed = [
                FieldChange(
                    field=f"nodes.{node_id}.agent",
                    before=f"{node.agent} (the agent being replaced)",
                    after=node.agent,
                )
                for node_id, node in want.graph.nodes.items()
                if f"Agent/{node.agent}" in self.replaced and node_id in live_graph.nodes
            ]
            diff = GraphDiff([*diff.changes, *repointed], diff.behavioural or bool(repointed))
        if not diff.changes:
            return False
        # Rewriting the nodes of a pipeline whose fields change too is one more write; order
        # them so the version moves predictably (fields first, then the graph).
        update_id = action_id("update", info.kind, want.name)
        after = [update_id] if update_id in self.actions else []
        graph_action = Action(
            id=action_id("replace-graph", info.kind, want.name),
            verb="replace-graph",
            kind=info.kind,
            name=want.name,
            summary=f"replace graph of {info.kind}/{want.name}",
            changes=tuple(diff.changes),
            depends_on=tuple(depends + after),
            live_id=have.live_id if have else None,
            payload=graph_payload(want.graph, live_graph),
            drawing=graph_drawing(want.graph, live_graph),
            source=_source(resource),
        )
        self.add(graph_action)
        return diff.behavioural

    # ---- deployments -----------------------------------------------------------------

    def deployments(self) -> None:
        specs = self.desired.deployment_specs
        targets: dict[str, int | None] = {}

        def target_version(key: str) -> int | None:
            if key in targets:
                return targets[key]
            targets[key] = None  # cycle guard; validation forbids cycles anyway
            spec = _deployment_spec(specs[key])
            if spec.promote_from is not None:
                source_key = f"{spec.target}/{spec.promote_from}"
                result = target_version(source_key) if source_key in specs else None
            elif isinstance(spec.version, int):
                result = spec.version
            else:
                result = self._pipeline_version(spec.target)
            targets[key] = result
            return result

        # Walk environments in order so a promotion's source is planned first.
        order: dict[str, int] = {env: index for index, env in enumerate(ENVIRONMENTS)}
        for key in sorted(specs, key=lambda k: (order.get(k.split("/")[-1], 9), k)):
            resource = specs[key]
            spec = _deployment_spec(resource)
            slot = self.live.state.deployments.get(key) or DeploymentSlot(
                pipeline=spec.target, environment=spec.environment
            )
            self._deployment(resource, spec, slot, target_version(key))

        deployed = KINDS["Deployment"].references[0].kind
        for key, slot in sorted(self.live.state.deployments.items()):
            if key in specs or not slot.running_ids:
                continue
            target = self.live.state.of_kind(deployed).get(slot.pipeline)
            self.unmanaged.append(
                Unmanaged(
                    kind="Deployment",
                    name=key,
                    live_id=slot.active_id or slot.running_ids[0],
                    # A deployment belongs to the set that owns what it deploys.
                    owners=self.owners(deployed, target.live_id if target else None),
                )
            )

    def refuse_agent_deployments(self) -> None:
        """Gateways and agents on gateways need a server that has them; refuse, never drop."""
        if self.live.rollout is not None:
            return
        for resource in self.desired.agent_deployment_specs.values():
            self.errors.append(
                f"{resource.location_of('agent')}: {resource.ref}: spec.agent: this server "
                "deploys pipelines, not agents onto gateways: it cannot hold an agent "
                "deployment (write `pipeline:`)"
            )
        for want in self.desired.of_kind("Gateway").values():
            if want.resource is not None:
                self.errors.append(
                    f"{want.resource.source}: {want.resource.ref}: this server has no "
                    "gateways: it cannot hold a Gateway"
                )

    def rollout(self) -> None:
        """Gateways and agents on gateways (servers that deploy agents; see ``rollout``)."""
        if self.live.rollout is None:
            return
        agent_writes: dict[str, list[str]] = {}
        for action in self.actions.values():
            if action.kind == "Agent" and action.verb in ("create", "update"):
                agent_writes.setdefault(action.name, []).append(action.id)
        planner = RolloutPlanner(
            live=self.live.rollout,
            agents={a.name: a for a in self.live.of_kind("Agent") if isinstance(a, Agent)},
            gateway_specs={
                name: want.resource
                for name, want in self.desired.of_kind("Gateway").items()
                if want.resource is not None
            },
            deployment_specs=self.desired.agent_deployment_specs,
            agent_writes=agent_writes,
            prune=self.options.prune or self.options.prune_unmanaged,
        )
        planner.plan()
        # An agent deployment belongs to the set that owns its agent. Gateways are not in
        # the sets' records yet: to every set they are unmanaged (--prune-unmanaged).
        agent_of = {d.id: d.agent_id for d in self.live.rollout.deployments}
        unmanaged = [
            u.model_copy(update={"owners": self.owners("Agent", agent_of[u.live_id])})
            if u.kind == "Deployment" and u.live_id in agent_of
            else u
            for u in planner.unmanaged
        ]
        kept = {(u.kind, u.name) for u in unmanaged if not self._prunable(u)}
        dropped: set[str] = set()
        for action in planner.actions:
            held = [d for d in action.depends_on if d in dropped]
            if action.verb == "delete" and ((action.kind, action.name) in kept or held):
                dropped.add(action.id)
                if held:
                    self.warnings.append(
                        f"{action.ref} is no longer declared but is kept: "
                        f"{', '.join(held)} is not deleted by this set"
                    )
                continue
            self.add(action)
        self.unmanaged.extend(unmanaged)
        self.errors.extend(planner.errors)

    def _pipeline_version(self, pipeline: str) -> int | None:
        if pipeline in self.expected_versions:
            return self.expected_versions[pipeline]
        have = self.live.state.of_kind("Pipeline").get(pipeline)
        return have.version if have else None

    def _deployment(
        self, resource: Resource, spec: DeploymentSpec, slot: DeploymentSlot, target: int | None
    ) -> None:
        current = slot.in_flight_version if slot.in_flight_id else slot.active_version
        if target is not None and current == target:
            return
        if spec.promote_from is not None:
            source_key = f"{spec.target}/{spec.promote_from}"
            self._slot_action(
                "promote",
                resource,
                spec,
                current,
                target,
                how=f"promote from {spec.promote_from}",
                after=[a for a in self._slot_action_ids(source_key) if a in self.actions],
                source_environment=spec.promote_from,
            )
        elif not isinstance(spec.version, int):
            self._slot_action("deploy", resource, spec, current, target, how="deploy")
        elif slot.active_id is not None and slot.replaced_version == target:
            self._slot_action(
                "rollback", resource, spec, current, target, how="rollback", live_id=slot.active_id
            )
        elif slot.active_id is None and self._pipeline_version(spec.target) == target:
            self._slot_action("deploy", resource, spec, current, target, how="deploy")
        else:
            self._unreachable(resource, spec, slot, current, target)

    def _slot_action(
        self,
        verb: Verb,
        resource: Resource,
        spec: DeploymentSpec,
        current: int | None,
        target: int | None,
        *,
        how: str,
        after: list[str] | None = None,
        live_id: str | None = None,
        source_environment: str | None = None,
    ) -> None:
        """One deploy, promote or rollback of a (pipeline, environment), shown as people say it."""
        key = f"{spec.target}/{spec.environment}"
        production = spec.environment == PRODUCTION
        warnings: tuple[str, ...] = ()
        requires_flag = None
        if verb == "rollback" and production:
            requires_flag = ALLOW_PRODUCTION_ROLLBACK
            warnings = (f"rolls back production: apply needs {ALLOW_PRODUCTION_ROLLBACK}",)
        elif verb == "deploy" and production and spec.target in self.changed_versions:
            warnings = (
                "deploys a pipeline change straight to production, not by promotion "
                "(consider `promote_from: staging`)",
            )
        before = f"v{current}" if current is not None else "(none)"
        after_version = f"v{target}" if target is not None else "(new version)"
        self.add(
            Action(
                id=action_id(verb, "Deployment", key),
                verb=verb,
                kind="Deployment",
                name=key,
                summary=(
                    f"Deployment/{resource.name}: {spec.target} in {spec.environment} "
                    f"{before} → {after_version} ({how})"
                ),
                changes=(FieldChange(field="pipeline_version", before=current, after=target),),
                depends_on=tuple((after or []) + _waits_for(KINDS["Deployment"], resource, verb)),
                live_id=live_id,
                payload=SlotPayload(
                    pipeline=spec.target,
                    environment=spec.environment,
                    expected_version=target,
                    deployment=resource.name,
                    source_environment=source_environment,
                ),
                warnings=warnings,
                requires_flag=requires_flag,
                source=_source(resource),
            )
        )

    def _unreachable(
        self,
        resource: Resource,
        spec: DeploymentSpec,
        slot: DeploymentSlot,
        current: int | None,
        target: int | None,
    ) -> None:
        reachable = []
        if slot.replaced_version is not None and slot.active_id is not None:
            reachable.append(f"v{slot.replaced_version} by rollback")
        latest = self._pipeline_version(spec.target)
        if latest is not None:
            reachable.append(f"v{latest} with `version: latest`")
        runs = f"v{current}" if current is not None else "(none)"
        self.errors.append(
            f"{resource.location_of('version')}: Deployment/{resource.name}: "
            f"version: v{target} is not reachable: {spec.environment} runs {runs}; "
            f"reachable: {', '.join(reachable) or 'nothing'} "
            "(promote_from reaches what an earlier environment runs)"
        )

    def _slot_action_ids(self, key: str) -> list[str]:
        return [action_id(verb, "Deployment", key) for verb in ("deploy", "promote", "rollback")]

    # ---- prune -----------------------------------------------------------------------

    def _prunable(self, item: Unmanaged) -> bool:
        """Owned by this set alone and --prune, or owned by nobody and --prune-unmanaged."""
        if item.owners == (self.options.set_name,):
            return self.options.prune or self.options.prune_unmanaged
        if not item.owners:
            return self.options.prune_unmanaged
        if self.options.set_name in item.owners:
            self.warnings.append(
                f"{item.kind}/{item.name} is listed by sets {', '.join(item.owners)}: "
                "not deleted by any of them until one lets go (docs/ownership.md)"
            )
        return False

    def _keep_held(self, deleted: set[tuple[str, str]]) -> None:
        """Keep what a resource that stays still references (an agent in a hand-made
        pipeline's graph); the plan names the holder. Repeated: what is kept may hold more.
        """
        owners_of = {(u.kind, u.name): u.owners for u in self.unmanaged}
        held_by: dict[tuple[str, str], list[str]] = {}
        changed = True
        while changed:
            changed = False
            for kind, name in sorted(deleted):
                holders = []
                for holder_info, reference in referrers(kind):
                    declared = self.desired.of_kind(holder_info.kind)
                    for holder, held in reference.live_holders(self.live.state):
                        stays = (holder_info.kind, holder) not in deleted
                        if held == name and stays and holder not in declared:
                            owners = owners_of.get((holder_info.kind, holder), ())
                            label = f"set {', '.join(owners)}" if owners else "unmanaged"
                            holders.append(f"{holder_info.kind}/{holder} ({label})")
                if holders:
                    deleted.discard((kind, name))
                    held_by[(kind, name)] = sorted(set(holders))
                    changed = True
        for (kind, name), holders in sorted(held_by.items()):
            self.warnings.append(
                f"{kind}/{name} is no longer declared but is kept: "
                f"{', '.join(holders)} still uses it"
            )
        self.unmanaged = [
            u.model_copy(update={"held_by": tuple(held_by[(u.kind, u.name)])})
            if (u.kind, u.name) in held_by
            else u
            for u in self.unmanaged
        ]

    def prune(self) -> None:
        if not (self.options.prune or self.options.prune_unmanaged):
            return
        deleted = {(u.kind, u.name) for u in self.unmanaged if self._prunable(u)}
        self._keep_held(deleted)
        for item in self.unmanaged:
            if item.kind != "Deployment" or item.name not in self.live.state.deployments:
                continue  # agent deployments are pruned by the rollout planner
            if (item.kind, item.name) not in deleted:
                continue
            slot = self.live.state.deployments[item.name]
            delete = pruning_delete(
                "Deployment",
                item.name,
                summary=f"undeploy {item.name} (v{slot.active_version})"
                if slot.active_version is not None
                else f"undeploy {item.name}",
                live_id=item.live_id,
                payload=UndeployPayload(deployment_ids=slot.running_ids),
                production=slot.environment == PRODUCTION,
                what="undeploys production",
            )
            self.add(delete)

        for item in self.unmanaged:
            info = KINDS[item.kind]
            if info.service is None or (item.kind, item.name) not in deleted:
                continue
            self.add(
                Action(
                    id=action_id("delete", item.kind, item.name),
                    verb="delete",
                    kind=item.kind,
                    name=item.name,
                    summary=f"delete {item.kind}/{item.name}",
                    depends_on=tuple(_lets_go(self.live.state, item.kind, item.name)),
                    live_id=item.live_id,
                    payload=DeletePayload(),
                )
            )

    def refuse_delete_all(self) -> None:
        if self.options.allow_delete_all:
            return
        for kind, info in KINDS.items():
            # A replace's delete is followed by a create: it does not empty the kind.
            deletes = [
                a
                for a in self.actions.values()
                if a.verb == "delete" and a.kind == kind and not _replaces(a)
            ]
            listed = self.live.state.of_kind(kind)
            if info.service is None and not listed:
                # A slot kind: its running slots (gateways are listed like named kinds).
                live_count = sum(1 for s in self.live.state.deployments.values() if s.running_ids)
            else:
                live_count = len(listed)
            if deletes and len(deletes) == live_count:
                self.errors.append(
                    f"the plan would delete every {kind} on the server ({live_count}); "
                    "if the manifest path is right, confirm with --allow-delete-all"
                )

    def finish(self) -> Plan:
        if self.errors:
            raise PlanError("\n".join(self.errors))
        # Keep only dependencies on actions that are in the plan.
        actions = [
            action.model_copy(
                update={"depends_on": tuple(d for d in action.depends_on if d in self.actions)}
            )
            for action in self.actions.values()
        ]
        actions = _filter_targets(actions, self._targeted())
        unmanaged = [u for u in self.unmanaged if not _is_pruned(u, actions)]
        adopt = self.adopt
        if self.options.targets:
            adopt = [a for a in adopt if f"{a.kind}/{a.name}" in self.options.targets]
        ownership = self.live.ownership
        return Plan(
            actions=tuple(_ordered(actions)),
            unmanaged=tuple(sorted(unmanaged, key=lambda u: (u.kind, u.name))),
            notes=tuple(self.warnings),
            prune=self.options.prune,
            targets=tuple(sorted(self.options.targets)),
            prune_unmanaged=self.options.prune_unmanaged,
            set_name=self.options.set_name,
            has_record=ownership is None or ownership.record_id is not None,
            adopt=tuple(sorted(adopt, key=lambda a: (a.kind, a.name))),
        )

    def _targeted(self) -> frozenset[str]:
        """The targets and, transitively, every resource they reference (README: "this
        resource and what it depends on"); a target that names nothing is an error."""
        targets = self.options.targets
        if not targets:
            return targets
        desired: dict[str, Resource] = {}
        for kind in KINDS:
            for name, want in self.desired.of_kind(kind).items():
                if want.resource is not None:
                    desired[f"{kind}/{name}"] = want.resource
        for key, resource in self.desired.deployment_specs.items():
            # A deployment is targeted by its manifest name or by pipeline/environment.
            desired[f"Deployment/{resource.name}"] = resource
            desired.setdefault(f"Deployment/{key}", resource)
        live = {f"{kind}/{name}" for kind in KINDS for name in self.live.state.of_kind(kind)}
        live |= {f"Deployment/{key}" for key in self.live.state.deployments}
        unknown = sorted(t for t in targets if t not in desired and t not in live)
        if unknown:
            raise PlanError(
                "\n".join(
                    f"--target {target}: no such resource in the manifests or on the server"
                    for target in unknown
                )
            )
        closure: set[str] = set()
        stack = list(targets)
        while stack:
            ref = stack.pop()
            if ref in closure:
                continue
            closure.add(ref)
            held = desired.get(ref)
            if held is None:
                continue
            for reference in KINDS[held.kind].references:
                stack.extend(f"{reference.kind}/{name}" for _, name in reference.names(held.spec))
            spec = held.spec
            if isinstance(spec, DeploymentSpec):
                stack.append(f"Deployment/{spec.pipeline}/{spec.environment}")
                if spec.promote_from is not None:
                    stack.append(f"Deployment/{spec.pipeline}/{spec.promote_from}")
        return frozenset(closure)


def _write(
    verb: Verb,
    want: ObjectState,
    changes: list[FieldChange],
    payload: ActionPayload,
    live_id: str | None = None,
    summary: str | None = None,
    depends_on: tuple[str, ...] = (),
) -> Action:
    """A create, update (or a replace's delete) of a declared resource of a named kind."""
    return Action(
        id=action_id(verb, want.kind, want.name),
        verb=verb,
        kind=want.kind,
        name=want.name,
        summary=summary or f"{verb} {want.kind}/{want.name}",
        changes=tuple(changes),
        depends_on=depends_on,
        live_id=live_id,
        payload=payload,
        source=_source(want.resource),
    )


def _replaces(action: Action) -> bool:
    """A replace's delete: a create follows it."""
    return isinstance(action.payload, DeletePayload) and action.payload.replace


def _waits_for(info: KindInfo, resource: Resource | None, verb: str) -> list[str]:
    """The writes that an action ``verb`` on ``resource`` waits for: those of what it references.

    Every candidate is named; ``finish`` keeps those the plan holds.
    """
    if resource is None:
        return []
    waits: list[str] = []
    for reference in info.references:
        if verb not in reference.written_by:
            continue
        target = KINDS[reference.kind]
        for name in sorted({name for _, name in reference.names(resource.spec)}):
            waits.extend(action_id(write, target.kind, name) for write in target.write_verbs)
    return waits


def _lets_go(live: State, kind: str, name: str) -> list[str]:
    """What a delete of ``kind``/``name`` waits for: every live holder of a reference to it
    lets go first, by its own delete or by the action that rewrites the field.

    The same reference table as ``_waits_for``, read the other way round.
    """
    waits: list[str] = []
    for holder_info, reference in referrers(kind):
        for holder, held in reference.live_holders(live):
            if held != name:
                continue
            for verb in ("delete", *reference.released_by):
                waits.append(action_id(verb, holder_info.kind, holder))
    return waits


def _is_pruned(item: Unmanaged, actions: Iterable[Action]) -> bool:
    return any(a.verb == "delete" and a.kind == item.kind and a.name == item.name for a in actions)


def _deployment_spec(resource: Resource) -> DeploymentSpec:
    spec = resource.spec
    assert isinstance(spec, DeploymentSpec)
    return spec


def _filter_targets(actions: list[Action], targets: frozenset[str]) -> list[Action]:
    """Keep the targeted resources' actions and everything they depend on (Terraform's -target)."""
    if not targets:
        return actions
    by_id = {a.id: a for a in actions}
    keep: set[str] = set()
    stack = [a.id for a in actions if a.ref in targets or _deployment_label(a) in targets]
    while stack:
        current = stack.pop()
        if current in keep:
            continue
        keep.add(current)
        stack.extend(by_id[current].depends_on)
    return [
        a.model_copy(update={"depends_on": tuple(d for d in a.depends_on if d in keep)})
        for a in actions
        if a.id in keep
    ]


def _deployment_label(action: Action) -> str:
    payload = action.payload
    if isinstance(payload, SlotPayload | AgentSlot):
        return f"Deployment/{payload.deployment}"
    return ""


def _ordered(actions: list[Action]) -> list[Action]:
    """Deletes first (they are what a reviewer must see first), then by dependency depth."""
    by_id = {a.id: a for a in actions}
    depth: dict[str, int] = {}

    def depth_of(action_id_: str, trail: frozenset[str] = frozenset()) -> int:
        if action_id_ in depth:
            return depth[action_id_]
        if action_id_ in trail:
            return 0
        deps = by_id[action_id_].depends_on
        value = 1 + max((depth_of(d, trail | {action_id_}) for d in deps), default=-1)
        depth[action_id_] = value
        return value

    return sorted(actions, key=lambda a: (a.verb != "delete", depth_of(a.id), a.kind, a.name))


def build_plan(desired: State, live: LiveSnapshot, options: PlanOptions | None = None) -> Plan:
    builder = _Builder(desired, live, options or PlanOptions())
    builder.refuse_agent_deployments()
    builder.objects()
    builder.rollout()
    builder.deployments()
    builder.prune()
    builder.refuse_delete_all()
    return builder.finish()
