"""Carry out gateway and agent-deployment actions (planned by ``kaizenctl.reconcile.rollout``).

The rules that matter here:

* A deploy finishes inside its POST. A ``failed`` answer (still a 200) fails the
  action with the server's ``error_message`` and the deployment's logs in time
  order, and what depends on it is skipped.
* Before a deploy, the agent is snapshotted as a version (the newest version is
  reused when it already holds the agent's config), and the deploy names it.
* A promotion that requires approval is **never executed**: kaizenctl creates it
  (or finds the one already waiting) and reports it as awaiting approval. Once
  people approve it on the platform, the platform carries it out, and the next
  apply finds it completed. A rejected one is reported as rejected.
* After a deploy or a completed promotion, the deployment it replaces is stopped,
  so one active deployment remains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaizenctl.api.errors import ApiError
from kaizenctl.api.gateways import APPROVED, COMPLETED, PENDING, REJECTED, RolloutServices
from kaizenctl.api.models import AgentDeployment, AgentVersion, Promotion
from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import KaizenctlError
from kaizenctl.reconcile.plan import (
    Action,
    AgentDeployPayload,
    AgentPromotePayload,
    AgentSlot,
    CreatePayload,
    DeletePayload,
    GatewayUpdatePayload,
    StopPayload,
)
from kaizenctl.reconcile.rollout import join_description, key_stamp, snapshot_matches

ACTIVE = "active"
LOG_LINES_ON_FAILURE = 10
CHANGELOG = "kaizenctl apply: {agent} to {environment}"


class RolloutFailed(KaizenctlError):
    """A gateway or agent-deployment action could not be carried out."""


@dataclass
class RolloutContext:
    api: KaizenApi
    services: RolloutServices
    agent_ids: dict[str, str]
    gateway_ids: dict[str, str] = field(default_factory=dict)
    # "agent/environment" -> the deployment this apply left active there.
    settled: dict[str, AgentDeployment] = field(default_factory=dict)


def handles(action: Action) -> bool:
    """True for the actions this module carries out."""
    if action.kind == "Gateway":
        return True
    return action.kind == "Deployment" and isinstance(action.payload, AgentSlot | StopPayload)


async def execute_rollout(
    context: RolloutContext,
    action: Action,
    awaiting: type[KaizenctlError],
    rejected: type[KaizenctlError],
) -> str:
    if action.kind == "Gateway":
        return await _gateway(context, action)
    payload = action.payload
    if isinstance(payload, StopPayload):
        stopped = [
            await context.services.agent_deployments.stop(deployment_id)
            for deployment_id in payload.deployment_ids
        ]
        return "stopped " + ", ".join(d.id for d in stopped)
    if isinstance(payload, AgentDeployPayload):
        return await _deploy(context, action, payload)
    if isinstance(payload, AgentPromotePayload):
        return await _promote(context, action, payload, awaiting, rejected)
    raise RolloutFailed(f"unknown action {action.verb} for {action.ref}")


async def _gateway(context: RolloutContext, action: Action) -> str:
    gateways = context.services.gateways
    payload = action.payload
    if isinstance(payload, CreatePayload):
        fields = dict(payload.fields)
        fields["description"] = join_description(
            fields.get("description"), key_stamp(str(fields["api_key"]))
        )
        created = await gateways.create(fields)
        context.gateway_ids[action.name] = created.id
        return f"created (id {created.id})"
    if isinstance(payload, DeletePayload):
        assert action.live_id is not None
        await gateways.delete(action.live_id)
        return "deleted"
    if not isinstance(payload, GatewayUpdatePayload):
        raise RolloutFailed(f"{action.verb} {action.ref}: the plan holds nothing to execute")
    assert action.live_id is not None
    changes: dict[str, Any] = dict(payload.changes)
    stamp = payload.key_stamp
    if payload.api_key is not None:
        changes["api_key"] = payload.api_key
        stamp = key_stamp(payload.api_key)
    # The description carries the key's stamp: rewrite both together.
    changes["description"] = join_description(payload.description, stamp)
    await gateways.update(action.live_id, changes)
    context.gateway_ids[action.name] = action.live_id
    changed = [c.field for c in action.changes]
    return "updated " + ", ".join(changed)


def _gateway_id(context: RolloutContext, payload: AgentSlot) -> str:
    gateway_id = payload.gateway_id or context.gateway_ids.get(payload.gateway)
    if not gateway_id:
        raise RolloutFailed(f"Gateway/{payload.gateway} does not exist on the server")
    return gateway_id


def _agent_id(context: RolloutContext, payload: AgentSlot) -> str:
    agent_id = context.agent_ids.get(payload.agent)
    if agent_id is None:
        raise RolloutFailed(f"Agent/{payload.agent} does not exist on the server")
    return agent_id


async def _snapshot(context: RolloutContext, agent_id: str) -> AgentVersion:
    """The agent's version holding its current config: the newest if it does, else a new one."""
    agent = await context.api.agents.get(agent_id)
    versions = await context.api.agents.list_versions(agent_id)
    newest = max(versions, key=lambda v: v.version, default=None)
    if newest is not None and snapshot_matches(newest.snapshot, agent):
        return newest
    return await context.api.agents.create_version(agent_id)


async def _failure(
    context: RolloutContext, deployment: AgentDeployment, what: str
) -> RolloutFailed:
    lines = [f"{what}: deployment {deployment.id} {deployment.status}"]
    if deployment.error_message:
        lines[0] += f": {deployment.error_message}"
    try:
        logs = await context.services.agent_deployments.logs(deployment.id)
    except ApiError:
        logs = []
    if logs:
        lines.append("logs (oldest first):")
        lines.extend(
            f"    {entry.created_at} {entry.event_type}: {entry.message}"
            for entry in logs[-LOG_LINES_ON_FAILURE:]
        )
    return RolloutFailed("\n".join(lines))


async def _settle(
    context: RolloutContext, action: Action, payload: AgentSlot, kept: AgentDeployment, what: str
) -> str:
    """Fail ``what`` (with the deployment's logs) unless the new deployment is active;
    else record it and stop what it replaces, so exactly one stays active. Says what
    was stopped."""
    if kept.status != ACTIVE:
        raise await _failure(context, kept, what)
    context.settled[action.name] = kept
    stopped = []
    for deployment_id in payload.replaces:
        if deployment_id != kept.id:
            await context.services.agent_deployments.stop(deployment_id)
            stopped.append(deployment_id)
    return f"; stopped {', '.join(stopped)}" if stopped else ""


async def _deploy(context: RolloutContext, action: Action, payload: AgentDeployPayload) -> str:
    agent_id = _agent_id(context, payload)
    gateway_id = _gateway_id(context, payload)
    version = await _snapshot(context, agent_id)
    deployment = await context.services.agent_deployments.deploy(agent_id, gateway_id, version.id)
    retired = await _settle(context, action, payload, deployment, f"deploy to {payload.gateway}")
    return (
        f"{payload.environment} runs v{version.version} "
        f"(deployment {deployment.id} on {payload.gateway}){retired}"
    )


async def _source(
    context: RolloutContext, payload: AgentPromotePayload, agent_id: str
) -> AgentDeployment:
    made_here = context.settled.get(payload.source_slot)
    if made_here is not None:
        return made_here
    # Not deployed by this apply: what is active on the source environment's gateway now.
    source_environment = payload.source_environment
    gateways = await context.services.gateways.list_all()
    source_gateways = {g.id for g in gateways if g.environment == source_environment}
    active = [
        d
        for d in await context.services.agent_deployments.list_all()
        if d.agent_id == agent_id and d.gateway_id in source_gateways and d.status == ACTIVE
    ]
    if not active:
        raise RolloutFailed(
            f"cannot promote: {payload.agent} has no active deployment in {source_environment}"
        )
    return max(active, key=lambda d: (d.deployed_at or d.created_at, d.created_at, d.id))


async def _promote(
    context: RolloutContext,
    action: Action,
    payload: AgentPromotePayload,
    awaiting: type[KaizenctlError],
    rejected: type[KaizenctlError],
) -> str:
    promotions = context.services.promotions
    standing = payload.pending_promotion or payload.rejected_promotion
    if standing:
        promotion = await promotions.get(standing)
    else:
        agent_id = _agent_id(context, payload)
        gateway_id = _gateway_id(context, payload)
        source = await _source(context, payload, agent_id)
        # Never a second request while one for this very source already waits.
        existing = [
            p
            for p in await promotions.list_all()
            if p.source_deployment_id == source.id
            and p.target_gateway_id == gateway_id
            and p.status == PENDING
            and p.requires_approval
        ]
        if existing:
            promotion = max(existing, key=lambda p: (p.created_at, p.id))
        else:
            promotion = await promotions.create(
                agent_id=agent_id,
                source_deployment_id=source.id,
                target_gateway_id=gateway_id,
                source_environment=payload.source_environment,
                target_environment=payload.environment,
            )
    return await _settle_promotion(context, action, payload, promotion, awaiting, rejected)


async def _settle_promotion(
    context: RolloutContext,
    action: Action,
    payload: AgentPromotePayload,
    promotion: Promotion,
    awaiting: type[KaizenctlError],
    rejected: type[KaizenctlError],
) -> str:
    route = f"{promotion.source_environment} → {promotion.target_environment}"
    if promotion.status == REJECTED:
        reason = f": {promotion.rejection_reason}" if promotion.rejection_reason else ""
        raise rejected(f"promotion {promotion.id} ({route}) was rejected on the platform{reason}")
    if promotion.status == PENDING and promotion.requires_approval:
        raise awaiting(
            f"promotion {promotion.id} ({route}) waits for approval on the platform; "
            "kaizenctl never executes it around the approvers: apply again once it is approved"
        )
    if promotion.status in (APPROVED, PENDING):
        # Approved (or never needing approval) but not carried out yet: this is allowed.
        promotion = await context.services.promotions.execute(promotion)
    if promotion.status != COMPLETED or not promotion.target_deployment_id:
        raise RolloutFailed(f"promotion {promotion.id} ({route}) ended {promotion.status}")
    deployment = await context.services.agent_deployments.get(promotion.target_deployment_id)
    retired = await _settle(context, action, payload, deployment, f"promotion {promotion.id}")
    return (
        f"promotion {promotion.id} completed: {payload.environment} runs deployment "
        f"{deployment.id} on {payload.gateway}{retired}"
    )
