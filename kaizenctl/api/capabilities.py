"""What a server can hold: the table the planner reads before it reads anything else.

Each dialect publishes one ``Capabilities`` value. The planner
(``kaizenctl.reconcile.holdable``) checks every manifest against it and refuses,
at the manifest's file and line, whatever the server would drop, change or
misread — so nothing is ever lost silently and a refused set writes nothing.
Outside ``kaizenctl.api`` this table is the only thing that differs between
dialects; no other module names one.

Field paths are spec paths as manifests write them; ``[]`` stands for every
item of a list (``conditions[].operator``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldLimit:
    """One rule about one spec field; a value breaking it is refused with ``reason``."""

    kind: str
    path: str
    reason: str
    # The field must be set (not null / left out).
    required: bool = False
    # Any value but null / left out is refused.
    refused_if_set: bool = False
    # Any value but an empty one ({} / [] / null) is refused.
    must_be_empty: bool = False
    # Only these values are accepted (when set).
    allowed_values: frozenset[Any] | None = None
    # These values are refused.
    refused_values: frozenset[Any] = frozenset()
    # A list longer than this is refused.
    max_items: int | None = None
    # A string (or each string of a list) longer than this is refused.
    max_length: int | None = None
    # A string (or each string of a list) must match this regular expression in full.
    pattern: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """The kinds and field values one dialect's server can hold, and how it defaults them."""

    # A short name recorded in saved plans ("contract", "studio").
    dialect: str
    # Kinds the server can hold; a manifest of any other kind is refused with the reason here.
    kinds: frozenset[str]
    refused_kinds: Mapping[str, str] = field(default_factory=dict)
    limits: tuple[FieldLimit, ...] = ()
    # (kind, field) -> the value the server stores when the field is left out. A manifest
    # that writes this value means the same as one that leaves the field out.
    defaults: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    # (kind, field) -> why the field cannot change once the resource exists.
    immutable: Mapping[tuple[str, str], str] = field(default_factory=dict)


CONTRACT_CAPABILITIES = Capabilities(
    dialect="contract",
    # Gateways and agent deployments are refused by the rollout planner, which knows that a
    # connection without gateway services cannot hold them (kaizenctl.reconcile.diff).
    kinds=frozenset({"Agent", "Pipeline", "Policy", "Deployment", "Gateway"}),
    limits=(
        FieldLimit(
            "Agent",
            "provider",
            "a CONTRACT.md server requires an agent's provider "
            "(openai, anthropic, azure or ollama)",
            required=True,
        ),
        FieldLimit(
            "Agent",
            "agent_type",
            "a CONTRACT.md server has no agent type (agent_type is for the studio dialect); "
            "remove the line",
            refused_if_set=True,
        ),
    ),
)


_STUDIO_NAME_CHARACTERS = "this server accepts only lowercase letters, '_' and '*' here"

STUDIO_CAPABILITIES = Capabilities(
    dialect="studio",
    kinds=frozenset({"Agent", "Pipeline", "Policy", "Deployment", "Gateway"}),
    limits=(
        FieldLimit(
            "Deployment",
            "pipeline",
            "this server deploys agents onto gateways, not pipelines: no endpoint takes a "
            "pipeline; deploy an agent instead (`agent:`, see docs/deployments-on-gateways.md)",
            refused_if_set=True,
        ),
        FieldLimit(
            "Agent",
            "provider",
            "this server stores only a model id (its runtime picks the provider from the "
            "model name), so a provider would be dropped: remove the line",
            refused_if_set=True,
        ),
        FieldLimit(
            "Agent", "system_prompt", "this server holds at most 10000 characters", max_length=10000
        ),
        FieldLimit(
            "Agent", "description", "this server holds at most 2000 characters", max_length=2000
        ),
        FieldLimit("Agent", "model", "this server holds at most 100 characters", max_length=100),
        FieldLimit(
            "Agent",
            "tools",
            "this server holds tool names of at most 100 characters",
            max_length=100,
        ),
        FieldLimit(
            "Pipeline",
            "config",
            "this server does not store a pipeline's config (it drops it without an error)",
            must_be_empty=True,
        ),
        FieldLimit(
            "Pipeline",
            "pattern",
            "this server knows only the patterns sequential, parallel, router, "
            "supervisor_worker (its `supervisor`) and ensemble",
            allowed_values=frozenset(
                {"sequential", "parallel", "router", "supervisor_worker", "ensemble"}
            ),
        ),
        FieldLimit(
            "Pipeline",
            "status",
            "on this server `archived` is what a delete does (archived pipelines count as "
            "gone); to remove the pipeline, delete its manifest and apply with --prune",
            refused_values=frozenset({"archived"}),
        ),
        FieldLimit(
            "Policy",
            "actions",
            "a policy on this server has exactly one action: write one Policy per action",
            max_items=1,
        ),
        FieldLimit("Policy", "actions", _STUDIO_NAME_CHARACTERS, pattern=r"[a-z_*]+"),
        FieldLimit("Policy", "resource_type", _STUDIO_NAME_CHARACTERS, pattern=r"[a-z_*]+"),
        FieldLimit(
            "Policy",
            "conditions[].operator",
            "this server's only regular-expression operator (`matches`) is anchored at the "
            "start of the value, so a search pattern would match differently: no faithful "
            "equivalent",
            refused_values=frozenset({"regex"}),
        ),
    ),
    defaults={
        ("Agent", "agent_type"): "chat",
        ("Pipeline", "edges[].source_handle"): "output",
        ("Pipeline", "edges[].target_handle"): "input",
    },
    immutable={
        ("Agent", "agent_type"): "this server cannot change an agent's type after create",
    },
)
