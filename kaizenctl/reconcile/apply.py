"""Execute a ``Plan``: actions run as soon as what they depend on is done.

Partial failure is a result, not an exception: an action that fails makes its
dependents ``skipped``; independent branches go on. The result says exactly
what was done, what failed (with the server's reason) and what never started,
and a rerun converges because every action is planned again from live state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kaizenctl.api.gateways import rollout_services
from kaizenctl.api.models import Deployment, Graph, GraphEdge, GraphNode
from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import ApplyError, KaizenctlError
from kaizenctl.kinds import KINDS, KindInfo
from kaizenctl.reconcile import rollout_apply
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.plan import (
    Action,
    CreatePayload,
    DeletePayload,
    GraphPayload,
    Plan,
    SlotPayload,
    UndeployPayload,
    UpdatePayload,
)
from kaizenctl.reconcile.rollout_apply import RolloutContext
from kaizenctl.redact import redact

# "interrupted": the action was on its way when the apply was stopped; it may or may
# not have taken effect, and the next plan, read from live state, will tell.
# "awaiting-approval": a promotion that people must approve on the platform first; it
# is neither done nor failed, and an apply after the approval carries on from there.
# "rejected": the platform's approvers refused that promotion.
OutcomeStatus = Literal[
    "done",
    "failed",
    "skipped",
    "interrupted",
    "not-started",
    "awaiting-approval",
    "rejected",
]
OUTCOME_STATUSES: tuple[OutcomeStatus, ...] = (
    "done",
    "awaiting-approval",
    "rejected",
    "failed",
    "skipped",
    "interrupted",
    "not-started",
)
DEFAULT_DEPLOY_TIMEOUT = 300.0
LOG_LINES_ON_FAILURE = 5


class ActionOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: str
    ref: str
    verb: str
    summary: str
    status: OutcomeStatus
    message: str = ""


class ApplyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcomes: tuple[ActionOutcome, ...]
    interrupted: bool = False

    def with_status(self, status: OutcomeStatus) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def ok(self) -> bool:
        return all(o.status == "done" for o in self.outcomes)

    @property
    def awaiting_approval(self) -> bool:
        """Something waits for a platform approval, and nothing else went wrong."""
        waiting = False
        for outcome in self.outcomes:
            if outcome.status == "awaiting-approval":
                waiting = True
            elif not (outcome.status == "done" or _behind_approval(outcome)):
                return False
        return waiting


def _waits(outcome: ActionOutcome) -> bool:
    return outcome.status == "awaiting-approval" or _behind_approval(outcome)


def _behind_approval(outcome: ActionOutcome) -> bool:
    return outcome.status == "skipped" and outcome.message.startswith(WAITING_FOR_APPROVAL)


# A skipped action's message when what it depends on waits for approval.
WAITING_FOR_APPROVAL = "waits for approval of"


class ActionFailed(KaizenctlError):
    """An action could not be carried out; the message says why."""


class AwaitingApproval(KaizenctlError):
    """The action waits for people to approve it on the platform (never bypassed)."""


class PromotionRejected(KaizenctlError):
    """The platform's approvers rejected the promotion; the message says who and why."""


ProgressCallback = Callable[[Action, OutcomeStatus, str], None]
# Called as an action starts running (its dependencies done), before its first request.
StartCallback = Callable[[Action], None]
# Told the id of every resource a create action made (ownership records confirm them).
CreatedCallback = Callable[[Action, str], None]


@dataclass
class _Context:
    api: KaizenApi
    # Kind -> name -> live id: what was listed, plus what this apply created.
    ids: dict[str, dict[str, str]]
    deploy_timeout: float
    on_created: CreatedCallback | None = None
    # (pipeline, environment) -> the deployment this apply made there, once settled.
    settled: dict[tuple[str, str], Deployment] = field(default_factory=dict)
    # Gateways and agents on gateways (None: the server has none).
    rollout: RolloutContext | None = None


def check_flags(plan: Plan, allowed_flags: frozenset[str]) -> None:
    """Refuse the whole apply, before any write, when an action needs a flag not given."""
    needed = sorted(
        (a.requires_flag, a.summary)
        for a in plan.actions
        if a.requires_flag is not None and a.requires_flag not in allowed_flags
    )
    if needed:
        lines = "\n".join(f"  {summary}: needs {flag}" for flag, summary in needed)
        raise ApplyError(f"refusing to apply; nothing was changed:\n{lines}")


async def execute_plan(
    api: KaizenApi,
    plan: Plan,
    live: LiveSnapshot,
    *,
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT,
    allowed_flags: frozenset[str] = frozenset(),
    on_progress: ProgressCallback | None = None,
    on_start: StartCallback | None = None,
    on_created: CreatedCallback | None = None,
) -> ApplyResult:
    check_flags(plan, allowed_flags)
    context = _Context(
        api=api,
        ids={kind: {o.name: o.id for o in items} for kind, items in live.listed.items()},
        deploy_timeout=deploy_timeout,
        on_created=on_created,
    )
    services = rollout_services(api)
    if services is not None:
        # Shares the agent ids: agents created by this apply are deployed by it too.
        context.rollout = RolloutContext(
            api=api, services=services, agent_ids=context.ids.setdefault("Agent", {})
        )
    finished: dict[str, asyncio.Event] = {a.id: asyncio.Event() for a in plan.actions}
    outcomes: dict[str, ActionOutcome] = {}
    started: set[str] = set()

    def record(action: Action, status: OutcomeStatus, message: str = "") -> None:
        message = redact(message)
        outcomes[action.id] = ActionOutcome(
            action_id=action.id,
            ref=action.ref,
            verb=action.verb,
            summary=action.summary,
            status=status,
            message=message,
        )
        if on_progress is not None:
            on_progress(action, status, message)

    async def run(action: Action) -> None:
        try:
            for dependency in action.depends_on:
                await finished[dependency].wait()
            failed_dependencies = [d for d in action.depends_on if outcomes[d].status != "done"]
            if failed_dependencies:
                blocking = [outcomes[d] for d in failed_dependencies]
                hard = [o for o in blocking if not _waits(o)]
                if hard:
                    record(action, "skipped", f"skipped: {hard[0].action_id} did not succeed")
                elif blocking[0].status == "awaiting-approval":
                    record(action, "skipped", f"{WAITING_FOR_APPROVAL} {blocking[0].action_id}")
                else:
                    record(action, "skipped", blocking[0].message)
                return
            started.add(action.id)
            if on_start is not None:
                on_start(action)
            try:
                message = await _execute(context, action)
            except AwaitingApproval as waiting:
                record(action, "awaiting-approval", str(waiting))
            except PromotionRejected as rejected:
                record(action, "rejected", str(rejected))
            except KaizenctlError as error:
                record(action, "failed", str(error))
            else:
                record(action, "done", message)
        finally:
            finished[action.id].set()

    tasks = [asyncio.ensure_future(run(action)) for action in plan.actions]
    interrupted = False
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # Ctrl-C or SIGTERM: report what happened instead of losing it.
        interrupted = True
    finally:
        for task in tasks:
            task.cancel()
    for action in plan.actions:
        if action.id not in outcomes:
            outcomes[action.id] = ActionOutcome(
                action_id=action.id,
                ref=action.ref,
                verb=action.verb,
                summary=action.summary,
                status="interrupted" if action.id in started else "not-started",
            )
    return ApplyResult(
        outcomes=tuple(outcomes[a.id] for a in plan.actions), interrupted=interrupted
    )


def _without_nulls(fields: dict[str, Any]) -> dict[str, Any]:
    # A create leaves a null field out: the server's default for it is null already.
    return {k: v for k, v in fields.items() if v is not None}


async def _execute(context: _Context, action: Action) -> str:
    info = KINDS[action.kind]
    verb = action.verb
    if rollout_apply.handles(action):
        if context.rollout is None:
            raise ActionFailed(f"{action.ref}: this server has no gateways")
        return await rollout_apply.execute_rollout(
            context.rollout, action, AwaitingApproval, PromotionRejected
        )
    if info.service is None:
        return await _execute_deployment(context, action)
    service = info.service(context.api)
    payload = action.payload
    if isinstance(payload, CreatePayload):
        created = await service.create(_without_nulls(payload.fields))
        context.ids.setdefault(info.kind, {})[action.name] = created.id
        if context.on_created is not None:
            context.on_created(action, created.id)
        return f"created (id {created.id})"
    if isinstance(payload, UpdatePayload):
        assert action.live_id is not None
        await service.update(action.live_id, payload.changes)
        return "updated " + ", ".join(c.field for c in action.changes)
    if isinstance(payload, DeletePayload):
        assert action.live_id is not None
        await service.delete(action.live_id)
        return "deleted"
    if isinstance(payload, GraphPayload) and info.graph is not None:
        item_id = action.live_id or context.ids.get(info.kind, {}).get(action.name)
        if item_id is None:
            raise ActionFailed(f"{action.ref} has no id: it was not created")
        graph = _resolve_graph(context, info, payload)
        await info.graph(context.api).put_graph(item_id, graph)
        return f"graph written ({len(graph.nodes)} nodes, {len(graph.edges)} edges)"
    raise ActionFailed(f"unknown action {verb} for {info.kind}")


def _resolve_graph(context: _Context, info: KindInfo, payload: GraphPayload) -> Graph:
    """The planned graph with its references resolved to ids, as the service takes it."""
    node_kind = info.graph_node_kind or ""
    node_ids = context.ids.get(node_kind, {})
    nodes = []
    for node in payload.nodes:
        agent_id = None
        if node.agent is not None:
            agent_id = node_ids.get(node.agent)
            if agent_id is None:
                raise ActionFailed(
                    f"node {node.id}: {node_kind}/{node.agent} does not exist on the server"
                )
        nodes.append(
            GraphNode(
                id=node.id,
                node_type=node.node_type,
                agent_id=agent_id,
                config=node.config,
                x=node.x,
                y=node.y,
            )
        )
    edges = [
        GraphEdge(
            source=edge.source,
            target=edge.target,
            source_handle=edge.source_handle,
            target_handle=edge.target_handle,
        )
        for edge in payload.edges
    ]
    return Graph(nodes=nodes, edges=edges)


async def _execute_deployment(context: _Context, action: Action) -> str:
    api = context.api
    payload = action.payload
    if isinstance(payload, UndeployPayload):
        for deployment_id in payload.deployment_ids:
            await api.deployments.delete(deployment_id)
        return "undeployed"
    if not isinstance(payload, SlotPayload):
        raise ActionFailed(f"{action.verb} {action.ref}: the plan holds nothing to execute")
    pipeline = payload.pipeline
    environment = payload.environment
    deployed = KINDS[action.kind].references[0].kind
    pipeline_id = context.ids.get(deployed, {}).get(pipeline)
    if pipeline_id is None:
        raise ActionFailed(f"{deployed}/{pipeline} does not exist on the server")
    expected = payload.expected_version

    if action.verb == "deploy":
        started = await api.deployments.deploy(pipeline_id, environment)
    elif action.verb == "rollback":
        assert action.live_id is not None
        started = await api.deployments.rollback(action.live_id)
    elif action.verb == "promote":
        source_environment = payload.source_environment
        if source_environment is None:
            raise ActionFailed("cannot promote: the plan names no source environment")
        source = await _active_deployment(context, pipeline, pipeline_id, source_environment)
        if source is None:
            raise ActionFailed(
                f"cannot promote: {pipeline} has no active deployment in {source_environment}"
            )
        if expected is not None and source.pipeline_version != expected:
            raise ActionFailed(
                f"cannot promote: {source_environment} runs v{source.pipeline_version}, "
                f"the plan expected v{expected}"
            )
        started = await api.deployments.promote(source.id, environment)
    else:
        raise ActionFailed(f"unknown deployment action {action.verb}")

    settled = await api.deployments.wait_settled(started.id, timeout=context.deploy_timeout)
    if settled.status != "active":
        raise ActionFailed(
            f"deployment {settled.id} ended {settled.status}"
            + await _last_log_lines(api, settled.id)
        )
    context.settled[(pipeline, environment)] = settled
    if expected is not None and settled.pipeline_version != expected:
        raise ActionFailed(
            f"deployment {settled.id} runs v{settled.pipeline_version}, the plan expected "
            f"v{expected} (did the pipeline change during the apply?)"
        )
    return f"{environment} runs v{settled.pipeline_version} (deployment {settled.id})"


async def _active_deployment(
    context: _Context, pipeline: str, pipeline_id: str, environment: str
) -> Deployment | None:
    made_here = context.settled.get((pipeline, environment))
    if made_here is not None:
        return made_here
    # Not deployed by this apply: ask the server what runs there now, settling first
    # anything still on its way, since a promotion needs an active source.
    running = await context.api.deployments.list_all(
        pipeline_id=pipeline_id, environment=environment
    )
    in_flight = [d for d in running if d.status in ("pending", "deploying")]
    for deployment in in_flight:
        await context.api.deployments.wait_settled(deployment.id, timeout=context.deploy_timeout)
    if in_flight:
        running = await context.api.deployments.list_all(
            pipeline_id=pipeline_id, environment=environment
        )
    active = [d for d in running if d.status == "active"]
    return max(active, key=lambda d: (d.created_at, d.id)) if active else None


async def _last_log_lines(api: KaizenApi, deployment_id: str) -> str:
    try:
        logs = await api.deployments.logs(deployment_id)
    except KaizenctlError:
        return ""
    if not logs:
        return ""
    tail = logs[-LOG_LINES_ON_FAILURE:]
    return "; last log lines:\n" + "\n".join(
        f"    {entry.timestamp} {entry.level}: {entry.message}" for entry in tail
    )
