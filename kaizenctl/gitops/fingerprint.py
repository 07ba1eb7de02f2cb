"""Fingerprints of live resources: what a saved plan read, so apply can tell if it moved.

A fingerprint is the sha256 of one live resource as the reconciler sees it
(its normalized ``State`` entry, plus its id and version), so it changes exactly
when something a plan depends on changes: a field, a node, an edge, the version
counter, the id (deleted and re-created under the same name), which
deployment runs in a slot, or which manifest sets own it. Timestamps are left
out on purpose: a server that touches ``updated_at`` without changing anything
must not make a plan stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
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


def _digest(view: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(view).encode()).hexdigest()


def live_fingerprints(live: LiveSnapshot) -> dict[str, str]:
    """``Kind/name`` (deployments: ``Deployment/pipeline/environment``) -> fingerprint."""
    prints: dict[str, str] = {}
    ownership = live.ownership
    for info in named_kinds():
        for name, item in live.state.of_kind(info.kind).items():
            view = object_view(item)
            if ownership is not None and item.live_id is not None:
                # Who owns it decides what prune may delete: a move between sets moves it.
                view["owners"] = sorted(ownership.owners_of(info.kind, item.live_id))
            prints[f"{info.kind}/{name}"] = _digest(view)
    for key, slot in live.state.deployments.items():
        # A slot whose deployments all stopped or failed runs nothing: it is not a resource.
        if slot.running_ids:
            prints[f"Deployment/{key}"] = _digest(slot_view(slot))
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
