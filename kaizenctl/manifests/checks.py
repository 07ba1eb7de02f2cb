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


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when a candidate is a near miss, else ``""``."""
    names = list(candidates)
    matches = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not matches:
        # Case slips (`agent` for `Agent`) score low on short words; catch them explicitly.
        matches = [name for name in names if name.lower() == word.lower()][:1]
    return f"; did you mean '{matches[0]}'?" if matches else ""


def deployment_identity(pipeline: str, environment: str) -> str:
    """A deployment is identified by its (pipeline, environment) pair."""
    return f"{pipeline}/{environment}"


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
    """`version` and `promote_from` exclude each other; promotion goes to a later environment."""
    assert isinstance(spec, DeploymentSpec)
    if spec.promote_from is None:
        return []
    if spec.version is not None:
        return [("promote_from", "write either version or promote_from, not both")]
    if ENVIRONMENTS.index(spec.promote_from) >= ENVIRONMENTS.index(spec.environment):
        earlier = ENVIRONMENTS[: ENVIRONMENTS.index(spec.environment)]
        allowed = ", ".join(earlier) if earlier else "none: it is the first environment"
        return [
            (
                "promote_from",
                f"must name an environment before {spec.environment} ({allowed})",
            )
        ]
    return []


def promotion_source_exists(resource: Resource, index: ResourceIndex) -> list[Problem]:
    """A promotion needs its own Deployment of the same pipeline in the source environment."""
    spec = resource.spec
    assert isinstance(spec, DeploymentSpec)
    if spec.promote_from is None:
        return []
    if index.find("Deployment", deployment_identity(spec.pipeline, spec.promote_from)):
        return []
    return [
        (
            "promote_from",
            f"no Deployment of pipeline '{spec.pipeline}' in {spec.promote_from} "
            "to promote from in the manifest set",
        )
    ]
