"""Fingerprints of live resources: what a saved plan read, so apply can tell if it moved.

A fingerprint is the sha256 of one live resource as the reconciler sees it
(its normalized ``State`` entry, plus its id and version), so it changes exactly
when something a plan depends on changes: a field, a node, an edge, the version
counter, the id (deleted and re-created under the same name), which
deployment runs in a slot, or which manifest sets own it. Timestamps are left
out on purpose: a server that touches ``updated_at`` without changing anything
must not make a plan stale.

A saved plan is read by people who must not see secrets, and a fast digest of
fields that hold one gives it away: "Unlock code is ${PIN}" with a 6-digit PIN
falls to a million sha256 guesses in about a second. So a resource whose fields
hold a ``${VAR}`` value (``sealed``), or whose view contains one of the plan's
secret texts anywhere, is fingerprinted with salted scrypt instead, as costly
to guess as the secret's own digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from kaizenctl.kinds import KINDS, named_kinds
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.state import DeploymentSlot, GraphState, ObjectState


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no whitespace, so equal values hash equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def _graph_view(graph: GraphState) -> dict[str, Any]:
    return {
        "nodes": {
            node_id: {
                "node_type": node.node_type,
                "agent": node.agent,
                "config": node.config,
                "position": list(node.position) if node.position is not None else None,
            }
            for node_id, node in graph.nodes.items()
        },
        "edges": sorted(
            [e.source, e.target, e.source_handle or "", e.target_handle or ""] for e in graph.edges
        ),
    }


def object_view(item: ObjectState) -> dict[str, Any]:
    """What of a live resource of a named kind a plan depends on."""
    info = KINDS[item.kind]
    view: dict[str, Any] = {"id": item.live_id, "fields": item.fields}
    if info.versioned:
        view["version"] = item.version
    if info.graph is not None:
        # None: the plan did not read this graph, so it cannot depend on it.
        view["graph"] = _graph_view(item.graph) if item.graph is not None else None
    return view


def slot_view(slot: DeploymentSlot) -> dict[str, Any]:
    view = asdict(slot)
    view["running_ids"] = sorted(slot.running_ids)
    return view


# The cost of kaizenctl.gitops.secrets' digests: ~16 MiB and tens of milliseconds each.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


@dataclass(frozen=True)
class SecretShield:
    """Which fingerprints must not be fast to guess: resources holding a secret."""

    salt: bytes = b""
    sealed_refs: frozenset[str] = frozenset()
    texts: frozenset[str] = frozenset()

    def guards(self, ref: str, text: str) -> bool:
        return ref in self.sealed_refs or any(secret in text for secret in self.texts)


def _digest(view: dict[str, Any], ref: str = "", shield: SecretShield | None = None) -> str:
    text = canonical_json(view)
    if shield is not None and shield.guards(ref, text):
        slow = hashlib.scrypt(
            text.encode(), salt=shield.salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
        )
        return "scrypt:" + slow.hex()
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def live_fingerprints(live: LiveSnapshot, shield: SecretShield | None = None) -> dict[str, str]:
    """``Kind/name`` (deployments: ``Deployment/pipeline/environment``) -> fingerprint."""
    prints: dict[str, str] = {}
    ownership = live.ownership
    for info in named_kinds():
        for name, item in live.state.of_kind(info.kind).items():
            ref = f"{info.kind}/{name}"
            view = object_view(item)
            if ownership is not None and item.live_id is not None:
                # Who owns it decides what prune may delete: a move between sets moves it.
                view["owners"] = sorted(ownership.owners_of(info.kind, item.live_id))
            prints[ref] = _digest(view, ref, shield)
    for key, slot in live.state.deployments.items():
        # A slot whose deployments all stopped or failed runs nothing: it is not a resource.
        if slot.running_ids:
            prints[f"Deployment/{key}"] = _digest(slot_view(slot))
    if live.rollout is not None:
        # Gateways (their stored description carries the key's stamp, so a key rotated by
        # hand shows too), every active agent deployment, and the promotions that wait or
        # were refused: what a saved plan's deploys and promotions were planned against.
        for gateway in live.rollout.gateways:
            prints[f"Gateway/{gateway.name}"] = _digest(gateway.model_dump())
        prints["Deployment/@agents-on-gateways"] = _digest(
            {
                "active": sorted(
                    (d.id, d.agent_id, d.gateway_id, d.agent_version_id or "")
                    for d in live.rollout.deployments
                    if d.status == "active"
                ),
                "promotions": sorted(
                    (p.id, p.status)
                    for p in live.rollout.promotions
                    if p.status in ("pending", "rejected")
                ),
            }
        )
    return dict(sorted(prints.items()))


def graphs_read(live: LiveSnapshot) -> list[str]:
    """Names of the objects (pipelines) whose graphs the plan fetched."""
    return sorted(
        name
        for info in named_kinds()
        if info.graph is not None
        for name, item in live.state.of_kind(info.kind).items()
        if item.graph is not None
    )


def compare_fingerprints(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """Every difference, one line each, in a stable order."""
    lines: list[str] = []
    for ref in sorted(set(saved) | set(now)):
        if ref not in now:
            lines.append(f"{ref}: deleted since the plan was made")
        elif ref not in saved:
            lines.append(f"{ref}: created since the plan was made")
        elif saved[ref] != now[ref]:
            lines.append(f"{ref}: changed since the plan was made")
    return lines
