"""Checks a model cannot express: within one spec, and across the whole manifest set.

Each check returns ``(spec path, message)`` pairs; the loader turns the path
into a file, line and column. The kind registry (``kaizenctl.kinds``) says which
checks run for which kind, so this module never switches on kind names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Protocol

from kaizenctl.api.models import ENVIRONMENTS
from kaizenctl.manifests.models import (
    DeploymentSpec,
    GatewaySpec,
    PipelineSpec,
    PolicySpec,
    Resource,
    Spec,
)

# (dotted spec path, message)
Problem = tuple[str, str]

# Node types whose node must name an agent (CONTRACT.md, Pipelines).
NODE_TYPES_NEEDING_AN_AGENT = frozenset({"agent", "supervisor"})
# Condition operators that may compare with null (CONTRACT.md, Policies).
NULLABLE_OPERATORS = frozenset({"eq", "ne"})


class ResourceIndex(Protocol):
    """What a set-wide check may ask of the manifest set."""

    def get(self, kind: str, name: str) -> Resource | None: ...

    def find(self, kind: str, identity: str) -> Resource | None: ...

    def of_kind(self, kind: str) -> list[Resource]: ...


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when a candidate is a near miss, else ``""``."""
    names = list(candidates)
    matches = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not matches:
        # Case slips (`agent` for `Agent`) score low on short words; catch them explicitly.
        matches = [name for name in names if name.lower() == word.lower()][:1]
    return f"; did you mean '{matches[0]}'?" if matches else ""


def deployment_identity(target: str, environment: str) -> str:
    """A deployment is identified by what it deploys (pipeline or agent) and its environment."""
    return f"{target}/{environment}"


def pipeline_graph(spec: Spec) -> list[Problem]:
    """Node ids unique, agent/supervisor nodes name an agent, edges join existing nodes."""
    assert isinstance(spec, PipelineSpec)
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, node in enumerate(spec.nodes):
        if node.id in first_index:
            problems.append(
                (
                    f"nodes[{index}].id",
                    f"duplicate node id '{node.id}' (also nodes[{first_index[node.id]}])",
                )
            )
        else:
            first_index[node.id] = index
        if node.node_type in NODE_TYPES_NEEDING_AN_AGENT and node.agent is None:
            article = "an" if node.node_type[0] in "aeiou" else "a"
            problems.append(
                (f"nodes[{index}].agent", f"{article} {node.node_type} node must name an agent")
            )
    seen_edges: dict[tuple[str, str, str | None, str | None], int] = {}
    for index, edge in enumerate(spec.edges):
        for end, node_id in (("from", edge.from_), ("to", edge.to)):
            if node_id not in first_index:
                problems.append(
                    (
                        f"edges[{index}].{end}",
                        f"no node with id '{node_id}' in this pipeline"
                        + did_you_mean(node_id, list(first_index)),
                    )
                )
        key = (edge.from_, edge.to, edge.source_handle, edge.target_handle)
        if key in seen_edges:
            problems.append(
                (f"edges[{index}]", f"duplicate edge (same as edges[{seen_edges[key]}])")
            )
        else:
            seen_edges[key] = index
    return problems


def policy_conditions(spec: Spec) -> list[Problem]:
    """Condition values fit their operator: regex compiles, `in` takes a list, null is eq/ne."""
    assert isinstance(spec, PolicySpec)
    problems: list[Problem] = []
    for index, condition in enumerate(spec.conditions):
        path = f"conditions[{index}].value"
        value = condition.value
        if value is None:
            if condition.operator not in NULLABLE_OPERATORS:
                problems.append((path, f"operator '{condition.operator}' needs a value"))
        elif condition.operator == "regex":
            if not isinstance(value, str):
                problems.append((path, "a regex condition's value must be a string"))
            else:
                try:
                    re.compile(value)
                except re.error as error:
                    problems.append((path, f"invalid regular expression: {error}"))
        elif condition.operator == "in" and not isinstance(value, list):
            problems.append((path, "operator 'in' takes a list of values"))
    return problems


def deployment_target(spec: Spec) -> list[Problem]:
    """One of pipeline/agent; `version` and `promote_from` exclude each other; promotion
    goes to a later environment."""
    assert isinstance(spec, DeploymentSpec)
    if (spec.pipeline is None) == (spec.agent is None):
        both = spec.pipeline is not None
        return [
            (
                "agent",
                "write exactly one of pipeline and agent"
                + (" (not both)" if both else " (what is deployed)"),
            )
        ]
    problems: list[Problem] = []
    if spec.gateway is not None and spec.pipeline is not None:
        problems.append(("gateway", "a gateway is chosen for an agent deployment only"))
    if spec.promote_from is None:
        return problems
    if spec.version is not None:
        return [*problems, ("promote_from", "write either version or promote_from, not both")]
    if ENVIRONMENTS.index(spec.promote_from) >= ENVIRONMENTS.index(spec.environment):
        earlier = ENVIRONMENTS[: ENVIRONMENTS.index(spec.environment)]
        allowed = ", ".join(earlier) if earlier else "none: it is the first environment"
        problems.append(
            (
                "promote_from",
                f"must name an environment before {spec.environment} ({allowed})",
            )
        )
    return problems


def promotion_source_exists(resource: Resource, index: ResourceIndex) -> list[Problem]:
    """A promotion needs its own Deployment of the same pipeline/agent in the source environment."""
    spec = resource.spec
    assert isinstance(spec, DeploymentSpec)
    if spec.promote_from is None or not spec.target:
        return []
    if index.find("Deployment", deployment_identity(spec.target, spec.promote_from)):
        return []
    what = "agent" if spec.agent is not None else "pipeline"
    return [
        (
            "promote_from",
            f"no Deployment of {what} '{spec.target}' in {spec.promote_from} "
            "to promote from in the manifest set",
        )
    ]


def gateway_choice(resource: Resource, index: ResourceIndex) -> list[Problem]:
    """`gateway:` names a Gateway of the deployment's environment; several need a choice."""
    spec = resource.spec
    assert isinstance(spec, DeploymentSpec)
    if spec.agent is None:
        return []
    gateways = [
        gateway
        for gateway in index.of_kind("Gateway")
        if isinstance(gateway.spec, GatewaySpec) and gateway.spec.environment == spec.environment
    ]
    if spec.gateway is not None:
        chosen = index.get("Gateway", spec.gateway)
        if chosen is None or not isinstance(chosen.spec, GatewaySpec):
            return []  # a missing reference is reported by the reference check
        if chosen.spec.environment != spec.environment:
            return [
                (
                    "gateway",
                    f"Gateway '{spec.gateway}' serves {chosen.spec.environment}, "
                    f"not {spec.environment}",
                )
            ]
        return []
    if len(gateways) > 1:
        names = ", ".join(sorted(gateway.name for gateway in gateways))
        return [
            (
                "environment",
                f"{spec.environment} has several gateways ({names}): "
                "choose one with `gateway:`",
            )
        ]
    return []


def api_key_from_variable(resource: Resource, index: ResourceIndex) -> list[Problem]:
    """A gateway's api_key is a secret: it must come from ${VAR}, never be written in Git."""
    if "api_key" in resource.sensitive_paths:
        return []
    return [
        (
            "api_key",
            "must come from an environment variable, e.g. api_key: ${GATEWAY_API_KEY} "
            "(a key written in the manifest would be in Git)",
        )
    ]
