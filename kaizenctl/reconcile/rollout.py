"""Gateways and agents on gateways: plan them from live state (no I/O here).

On a server that deploys agents onto gateways (the shipped Kaizen Studio) a
``Deployment`` with ``agent:`` is one active deployment of that agent on the
gateway of its environment. How kaizenctl knows what runs there:

* **Agent versions.** Every deploy made by apply first snapshots the agent
  (``POST /agents/{id}/versions``, reusing the newest version when it already
  matches) and deploys with that ``agent_version_id``; a promotion carries its
  source's version id over. So a deployment's version says which agent config it
  was made from, and the platform's version history follows Git.
* ``version: latest`` is up to date when the kept deployment's version snapshot
  matches the agent as it is (and as it stays: an agent changed by this plan
  means a redeploy). A deployment without a version (made by hand) is redeployed.
* ``promote_from: ENV`` is up to date when the kept deployment carries the same
  version id as the source's. Otherwise a promotion is asked for: it completes at
  once, or waits for approval. A promotion that waits is **never executed** by
  kaizenctl: the action reports it as awaiting approval until people approve it
  on the platform (which carries it out), and one they rejected is reported as
  rejected until the source moves on.
* The server allows several active deployments of one agent on one gateway; the
  newest (preferring one at the wanted version) is kept and the others are
  stopped, each shown as drift (verb ``stop``).
* Stop is the undeploy: an active deployment no manifest describes is listed as
  unmanaged and stopped only with ``--prune`` (production needs
  ``--allow-production-delete``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from kaizenctl.api.models import (
    ENVIRONMENTS,
    Agent,
    AgentDeployment,
    AgentVersion,
    Gateway,
    Promotion,
)
from kaizenctl.manifests.models import DeploymentSpec, GatewaySpec, Resource
from kaizenctl.reconcile.plan import (
    Action,
    ActionPayload,
    AgentDeployPayload,
    AgentPromotePayload,
    AgentSlot,
    CreatePayload,
    DeletePayload,
    FieldChange,
    GatewayUpdatePayload,
    StopPayload,
    Unmanaged,
    Verb,
)

ACTIVE = "active"
PRODUCTION = "production"
ALLOW_PRODUCTION_DELETE = "--allow-production-delete"

# Snapshot keys (as a server writes them) -> the agent field they hold.
SNAPSHOT_FIELDS = {
    "name": "name",
    "description": "description",
    "system_prompt": "system_prompt",
    "model_id": "model",
    "model": "model",
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "agent_type": "agent_type",
    "provider": "provider",
}
FLOAT_TOLERANCE = 1e-6

# ---- the gateway key's stamp -----------------------------------------------------------
#
# A gateway's api_key is write-only: the server never returns it, so it cannot be
# compared. apply keeps a salted scrypt digest of the key it sent (never the key)
# as a trailer of the gateway's description, and re-sends the key only when the
# key the manifest resolves to no longer matches that digest (or there is none).

STAMP_PREFIX = "[kaizenctl api_key scrypt "


def key_stamp(api_key: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(api_key.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32).hex()
    return f"{STAMP_PREFIX}{salt.hex()}:{digest}]"


def stamp_matches(api_key: str, stamp: str | None) -> bool:
    if not stamp or not stamp.startswith(STAMP_PREFIX) or not stamp.endswith("]"):
        return False
    salt_hex, _, digest = stamp[len(STAMP_PREFIX) : -1].partition(":")
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    return hmac.compare_digest(key_stamp(api_key, salt), stamp) and bool(digest)


def split_description(text: str | None) -> tuple[str | None, str | None]:
    """A stored description -> (the description people wrote, kaizenctl's key stamp)."""
    if not text:
        return None, None
    head, separator, tail = text.rpartition("\n\n")
    candidate = tail if separator else text
    if candidate.startswith(STAMP_PREFIX):
        return (head or None) if separator else None, candidate
    return text, None


def join_description(description: str | None, stamp: str | None) -> str:
    parts = [part for part in (description, stamp) if part]
    return "\n\n".join(parts)


# ---- live state ------------------------------------------------------------------------


@dataclass
class RolloutLive:
    """What the rollout planner reads: gateways, deployments, promotions, agent versions."""

    gateways: list[Gateway]
    deployments: list[AgentDeployment]
    promotions: list[Promotion]
    # agent id -> its versions
    versions: dict[str, list[AgentVersion]] = field(default_factory=dict)

    def gateway_named(self, name: str) -> Gateway | None:
        for gateway in self.gateways:
            if gateway.name == name:
                return gateway
        return None

    def version(self, version_id: str | None) -> AgentVersion | None:
        if not version_id:
            return None
        for versions in self.versions.values():
            for version in versions:
                if version.id == version_id:
                    return version
        return None


def _deployed_order(deployment: AgentDeployment) -> tuple[str, str, str]:
    return (deployment.deployed_at or deployment.created_at, deployment.created_at, deployment.id)


def snapshot_matches(snapshot: dict[str, Any], agent: Agent) -> bool:
    """True when a version's snapshot holds the agent's current config."""
    if not snapshot:
        return False
    for key, value in snapshot.items():
        name = SNAPSHOT_FIELDS.get(key)
        # The name does not change what runs; agent_type cannot change once created (and a
        # dialect may read its server default back as unset).
        if name is None or name in ("name", "agent_type"):
            continue
        current = getattr(agent, name, None)
        if not _same(value, current):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    # Unset is "" / 0 / None depending on the side.
    if a in (None, "", 0) and b in (None, "", 0) and not isinstance(a, bool):
        return True
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= FLOAT_TOLERANCE
    return bool(a == b)


def _source(resource: Resource | None) -> str | None:
    if resource is None:
        return None
    return f"{resource.source.file}:{resource.source.line}"


def _action_id(verb: str, kind: str, name: str) -> str:
    return f"{verb}:{kind}/{name}"


def pruning_delete(
    kind: str,
    name: str,
    *,
    summary: str,
    live_id: str,
    payload: ActionPayload,
    production: bool,
    what: str,
    depends_on: tuple[str, ...] = (),
) -> Action:
    """The delete of something no manifest describes; in production apply needs a flag
    (``what`` says what it does there: "undeploys production")."""
    return Action(
        id=_action_id("delete", kind, name),
        verb="delete",
        kind=kind,
        name=name,
        summary=summary,
        live_id=live_id,
        depends_on=depends_on,
        payload=payload,
        requires_flag=ALLOW_PRODUCTION_DELETE if production else None,
        warnings=(f"{what}: apply needs {ALLOW_PRODUCTION_DELETE}",) if production else (),
    )


# ---- the planner -----------------------------------------------------------------------


@dataclass
class RolloutPlanner:
    """Adds gateway and agent-deployment actions to a plan being built."""

    live: RolloutLive
    agents: dict[str, Agent]  # live agents by name
    gateway_specs: dict[str, Resource]
    deployment_specs: dict[str, Resource]  # "agent/environment" -> manifest
    # Ids of actions of this plan that change an agent (create or update), by agent name.
    agent_writes: dict[str, list[str]]
    prune: bool = False
    actions: list[Action] = field(default_factory=list)
    unmanaged: list[Unmanaged] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # "agent/environment" -> ids of this plan's actions that change what runs there.
    slot_actions: dict[str, list[str]] = field(default_factory=dict)
    # "agent/environment" -> the live deployment kept there (None: none active).
    _kept: dict[str, AgentDeployment | None] = field(default_factory=dict)
    # "agent/environment" -> the version id it runs after this plan (None: not known yet).
    _future: dict[str, str | None] = field(default_factory=dict)

    def plan(self) -> None:
        self._gateways()
        self._deployments()

    # ---- gateways ----

    def _gateways(self) -> None:
        live_by_name: dict[str, list[Gateway]] = {}
        for gateway in self.live.gateways:
            live_by_name.setdefault(gateway.name, []).append(gateway)
        for name, found in sorted(live_by_name.items()):
            if len(found) > 1:
                ids = ", ".join(g.id for g in found)
                self.errors.append(
                    f"live state holds more than one Gateway named {name} (ids {ids}); "
                    "kaizenctl identifies resources by name and will not guess: "
                    "delete or rename the extra ones in the platform first"
                )
        for name, resource in sorted(self.gateway_specs.items()):
            spec = resource.spec
            assert isinstance(spec, GatewaySpec)
            have = live_by_name.get(name, [None])[0]
            self._gateway(resource, spec, have)
        for name, found in sorted(live_by_name.items()):
            if name in self.gateway_specs:
                continue
            gateway = found[0]
            self.unmanaged.append(Unmanaged(kind="Gateway", name=name, live_id=gateway.id))
            if self.prune:
                holders = [
                    _action_id("delete", "Deployment", self._live_label(d))
                    for d in self.live.deployments
                    if d.gateway_id == gateway.id and d.status == ACTIVE
                ]
                if any(
                    d.gateway_id == gateway.id
                    and d.status == ACTIVE
                    and d.agent_id not in {a.id for a in self.agents.values()}
                    for d in self.live.deployments
                ):
                    self.errors.append(
                        f"Gateway/{name} is in no manifest, but agents this set does not manage "
                        "are deployed on it: it is not deleted (remove it with --prune once "
                        "nothing else runs there)"
                    )
                    continue
                self.actions.append(
                    pruning_delete(
                        "Gateway",
                        name,
                        summary=f"delete Gateway/{name}",
                        live_id=gateway.id,
                        payload=DeletePayload(),
                        production=gateway.environment == PRODUCTION,
                        what="deletes a production gateway",
                        depends_on=tuple(holders),
                    )
                )

    @staticmethod
    def desired_gateway_fields(spec: GatewaySpec) -> dict[str, Any]:
        return {
            "api_url": spec.api_url.rstrip("/"),
            "environment": spec.environment,
            "description": spec.description or None,
            "health_check_url": spec.health_check_url or None,
        }

    def _gateway(self, resource: Resource, spec: GatewaySpec, have: Gateway | None) -> None:
        want = self.desired_gateway_fields(spec)
        name = resource.name
        key_change = FieldChange(field="api_key", before=None, after=None, sensitive=True)
        if have is None:
            created = [FieldChange(field=k, after=v) for k, v in want.items() if v is not None]
            self._gateway_write(
                "create",
                resource,
                [*created, key_change],
                CreatePayload(fields={"name": name, **want, "api_key": spec.api_key}),
            )
            return
        description, stamp = split_description(have.description)
        live_fields = {
            "api_url": have.api_url.rstrip("/"),
            "environment": have.environment,
            "description": description,
            "health_check_url": have.health_check_url or None,
        }
        changes = [
            FieldChange(field=k, before=live_fields[k], after=v)
            for k, v in want.items()
            if (live_fields[k] or None) != (v or None)
        ]
        resend_key = not stamp_matches(spec.api_key, stamp)
        if resend_key:
            changes.append(key_change)
        if not changes:
            return
        payload = GatewayUpdatePayload(
            changes={c.field: c.after for c in changes if not c.sensitive},
            description=want["description"],
            key_stamp=stamp,
            api_key=spec.api_key if resend_key else None,
        )
        self._gateway_write(
            "update",
            resource,
            changes,
            payload,
            live_id=have.id,
            warnings=(
                ("the key on the platform is not known to match the manifest's: it is re-sent",)
                if resend_key and stamp is None
                else ()
            ),
        )

    def _gateway_write(
        self,
        verb: Verb,
        resource: Resource,
        changes: list[FieldChange],
        payload: ActionPayload,
        live_id: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        """A create or update of a declared gateway."""
        self.actions.append(
            Action(
                id=_action_id(verb, "Gateway", resource.name),
                verb=verb,
                kind="Gateway",
                name=resource.name,
                summary=f"{verb} Gateway/{resource.name}",
                changes=tuple(changes),
                live_id=live_id,
                payload=payload,
                warnings=warnings,
                source=_source(resource),
            )
        )

    # ---- deployments ----

    def _gateway_for(self, resource: Resource, spec: DeploymentSpec) -> tuple[str, str | None]:
        """(gateway name, live id or None when this plan creates it)."""
        if spec.gateway is not None:
            chosen = self.live.gateway_named(spec.gateway)
            return spec.gateway, chosen.id if chosen else None
        desired = [
            name
            for name, r in self.gateway_specs.items()
            if isinstance(r.spec, GatewaySpec) and r.spec.environment == spec.environment
        ]
        live = [g.name for g in self.live.gateways if g.environment == spec.environment]
        names = sorted(set(desired) | (set(live) if not desired else set()))
        if len(names) != 1:
            why = (
                f"several gateways serve {spec.environment} ({', '.join(names)}): "
                "choose one with `gateway:`"
                if names
                else f"no Gateway serves {spec.environment}: add one to the manifests"
            )
            self.errors.append(
                f"{resource.location_of('environment')}: {resource.ref}: spec.environment: {why}"
            )
            return "", None
        found = self.live.gateway_named(names[0])
        return names[0], found.id if found else None

    def _live_label(self, deployment: AgentDeployment) -> str:
        agent = next((a.name for a in self.agents.values() if a.id == deployment.agent_id), None)
        gateway = next((g for g in self.live.gateways if g.id == deployment.gateway_id), None)
        environment = gateway.environment if gateway else "?"
        return f"{agent or deployment.agent_id}/{environment}@{gateway.name if gateway else '?'}"

    def _version_label(self, version_id: str | None) -> str:
        version = self.live.version(version_id)
        if version is not None:
            return f"v{version.version}"
        return "(unversioned)" if version_id is None else "(unknown version)"

    def _deployments(self) -> None:
        order: dict[str, int] = {env: index for index, env in enumerate(ENVIRONMENTS)}
        claimed: set[str] = set()
        # Environments in order, so a promotion's source is planned first.
        for key in sorted(
            self.deployment_specs, key=lambda k: (order.get(k.rsplit("/", 1)[1], 9), k)
        ):
            resource = self.deployment_specs[key]
            spec = resource.spec
            assert isinstance(spec, DeploymentSpec)
            claimed.update(self._deployment(key, resource, spec))
        ours = {agent.id for agent in self.agents.values()}
        for deployment in sorted(self.live.deployments, key=_deployed_order):
            if deployment.status != ACTIVE or deployment.id in claimed:
                continue
            if deployment.agent_id not in ours:
                continue  # an agent outside what this connection manages (another workspace)
            label = self._live_label(deployment)
            self.unmanaged.append(Unmanaged(kind="Deployment", name=label, live_id=deployment.id))
            if self.prune:
                gateway = next(
                    (g for g in self.live.gateways if g.id == deployment.gateway_id), None
                )
                self.actions.append(
                    pruning_delete(
                        "Deployment",
                        label,
                        summary=f"undeploy {label} (stop deployment {deployment.id})",
                        live_id=deployment.id,
                        payload=StopPayload(deployment_ids=(deployment.id,)),
                        production=gateway is not None and gateway.environment == PRODUCTION,
                        what="undeploys production",
                    )
                )

    def _active_on(self, agent_id: str | None, gateway_id: str | None) -> list[AgentDeployment]:
        if agent_id is None or gateway_id is None:
            return []
        return sorted(
            (
                d
                for d in self.live.deployments
                if d.agent_id == agent_id and d.gateway_id == gateway_id and d.status == ACTIVE
            ),
            key=_deployed_order,
        )

    def _deployment(self, key: str, resource: Resource, spec: DeploymentSpec) -> set[str]:
        """Plan one agent/environment; returns the live deployment ids it accounts for."""
        assert spec.agent is not None
        if isinstance(spec.version, int):
            self.errors.append(
                f"{resource.location_of('version')}: {resource.ref}: spec.version: this server "
                "deploys an agent's current config whatever version is pinned, so "
                f"`version: {spec.version}` cannot be held: use `version: latest` or promote_from"
            )
            return set()
        gateway_name, gateway_id = self._gateway_for(resource, spec)
        if not gateway_name:
            return set()
        agent = self.agents.get(spec.agent)
        agent_id = agent.id if agent else None
        active = self._active_on(agent_id, gateway_id)
        agent_changes = self.agent_writes.get(spec.agent, [])
        gateway_writes = [
            a.id
            for a in self.actions
            if a.kind == "Gateway" and a.name == gateway_name and a.verb != "delete"
        ]

        wanted_version: str | None = None
        source_key = f"{spec.agent}/{spec.promote_from}" if spec.promote_from else None
        # The source changes in this apply; what it will run is known only if it is restored
        # to a version it already had (a deploy of a changed agent makes a new one).
        source_moves = bool(source_key and self.slot_actions.get(source_key))
        if source_key is not None:
            wanted_version = self._future.get(source_key)
        # Keep the newest active at the wanted version, else the newest active.
        keep: AgentDeployment | None = None
        if active:
            if source_key is not None:
                matching = [
                    d for d in active if wanted_version and d.agent_version_id == wanted_version
                ]
            else:
                matching = [d for d in active if self._runs_current(d, agent)]
            keep = (matching or active)[-1]
        self._kept[key] = keep
        extras = [d for d in active if keep is None or d.id != keep.id]

        up_to_date = False
        if keep is not None:
            if source_key is None:
                up_to_date = not agent_changes and self._runs_current(keep, agent)
            else:
                up_to_date = wanted_version is not None and keep.agent_version_id == wanted_version
        if source_key is None:
            self._future[key] = keep.agent_version_id if up_to_date and keep else None
        else:
            self._future[key] = wanted_version
        before = self._version_label(keep.agent_version_id) if keep else "(none)"
        production = spec.environment == PRODUCTION
        slot_ids: list[str] = []
        where = AgentSlot(
            agent=spec.agent,
            environment=spec.environment,
            gateway=gateway_name,
            gateway_id=gateway_id,
            deployment=resource.name,
            replaces=(keep.id,) if keep is not None else (),
        ).model_dump()
        depends = [*agent_changes, *gateway_writes]
        if not up_to_date and source_key is None:
            deploy = self._slot_change(
                "deploy",
                key,
                resource,
                before=before,
                after="current agent",
                shown="(current agent)",
                how=f"deploy on {gateway_name}",
                depends_on=depends,
                payload=AgentDeployPayload(**where),
                warnings=(
                    (
                        "deploys an agent change straight to production, not by promotion "
                        "(consider `promote_from: staging`)",
                    )
                    if production and agent_changes
                    else ()
                ),
            )
            slot_ids.append(deploy)
        elif not up_to_date and source_key is not None:
            source = self._kept.get(source_key)
            waiting = self._standing_promotion(agent_id, gateway_id, source, source_moves)
            source_label = (
                self._version_label(wanted_version)
                if wanted_version
                else "(what it runs after this apply)"
            )
            how = f"promote from {spec.promote_from}"
            standing: dict[str, str] = {}
            warnings: tuple[str, ...] = ()
            if waiting is not None and waiting.status == "rejected":
                how += f"; promotion {waiting.id} was rejected"
                standing["rejected_promotion"] = waiting.id
                warnings = (
                    f"promotion {waiting.id} of this source was rejected on the platform"
                    + (f" ({waiting.rejection_reason})" if waiting.rejection_reason else "")
                    + "; kaizenctl does not ask again until the source changes",
                )
            elif waiting is not None:
                how += f"; promotion {waiting.id} awaits approval"
                standing["pending_promotion"] = waiting.id
                warnings = (
                    f"promotion {waiting.id} waits for approval on the platform; "
                    "kaizenctl never executes it around the approvers",
                )
            elif production:
                warnings = (
                    "a promotion to production waits for approval on the platform: apply "
                    "reports it as awaiting approval (a merged pull request is not an approval)",
                )
            promote = self._slot_change(
                "promote",
                key,
                resource,
                before=before,
                after=source_label,
                how=how,
                depends_on=[*self.slot_actions.get(source_key, []), *depends],
                payload=AgentPromotePayload(
                    **where, **standing, source_environment=spec.promote_from
                ),
                warnings=warnings,
            )
            slot_ids.append(promote)
        for extra in extras:
            stop = Action(
                id=_action_id("stop", "Deployment", f"{key}/{extra.id}"),
                verb="stop",
                kind="Deployment",
                name=f"{key}/{extra.id}",
                summary=f"Deployment/{resource.name}: stop extra active deployment {extra.id} "
                f"of {spec.agent} on {gateway_name} "
                f"({self._version_label(extra.agent_version_id)}; one belongs there)",
                changes=(FieldChange(field="active_deployments", before=len(active), after=1),),
                live_id=extra.id,
                payload=StopPayload(deployment_ids=(extra.id,)),
                source=_source(resource),
            )
            self.actions.append(stop)
        self.slot_actions[key] = slot_ids
        return {d.id for d in active}

    def _slot_change(
        self,
        verb: Verb,
        key: str,
        resource: Resource,
        *,
        before: str,
        after: str,
        how: str,
        depends_on: list[str],
        payload: AgentDeployPayload | AgentPromotePayload,
        warnings: tuple[str, ...],
        shown: str | None = None,
    ) -> str:
        """A deploy or promote of one agent/environment, shown as people say it; its id."""
        action = Action(
            id=_action_id(verb, "Deployment", key),
            verb=verb,
            kind="Deployment",
            name=key,
            summary=f"Deployment/{resource.name}: {payload.agent} in {payload.environment} "
            f"{before} → {shown or after} ({how})",
            changes=(FieldChange(field="agent_version", before=before, after=after),),
            depends_on=tuple(depends_on),
            payload=payload,
            warnings=warnings,
            source=_source(resource),
        )
        self.actions.append(action)
        return action.id

    def _runs_current(self, deployment: AgentDeployment, agent: Agent | None) -> bool:
        version = self.live.version(deployment.agent_version_id)
        return (
            version is not None and agent is not None and snapshot_matches(version.snapshot, agent)
        )

    def _standing_promotion(
        self,
        agent_id: str | None,
        gateway_id: str | None,
        source: AgentDeployment | None,
        source_moves: bool,
    ) -> Promotion | None:
        """The newest pending-for-approval or rejected promotion of this very source."""
        if source is None or source_moves or agent_id is None or gateway_id is None:
            return None
        candidates = [
            p
            for p in self.live.promotions
            if p.agent_id == agent_id
            and p.target_gateway_id == gateway_id
            and p.source_deployment_id == source.id
        ]
        if not candidates:
            return None
        newest = max(candidates, key=lambda p: (p.created_at, p.id))
        if newest.status == "rejected" or (newest.status == "pending" and newest.requires_approval):
            return newest
        return None
