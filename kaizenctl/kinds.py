"""The registry of manifest kinds: the one place that declares a kind.

Loader, validation, JSON Schema generation, diff order and export read this
table; adding a kind means adding one ``KindInfo`` here (plus its handler in
``kaizenctl.reconcile.handlers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kaizenctl.manifests.checks import (
    Problem,
    ResourceIndex,
    deployment_identity,
    deployment_target,
    pipeline_graph,
    policy_conditions,
    promotion_source_exists,
)
from kaizenctl.manifests.models import (
    AgentSpec,
    DeploymentSpec,
    ManifestModel,
    PipelineSpec,
    PolicySpec,
    Resource,
    Spec,
)


@dataclass(frozen=True)
class Reference:
    """A spec field that names another resource by ``metadata.name``."""

    kind: str
    # Returns every (dotted field path, referenced name) in a spec.
    names: Callable[[Spec], list[tuple[str, str]]]


@dataclass(frozen=True)
class KindInfo:
    kind: str
    spec_model: type[ManifestModel]
    # Lower ranks are created first and deleted last.
    rank: int
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


def _node_agents(spec: Spec) -> list[tuple[str, str]]:
    assert isinstance(spec, PipelineSpec)
    return [
        (f"nodes[{index}].agent", node.agent)
        for index, node in enumerate(spec.nodes)
        if node.agent is not None
    ]


def _deployment_pipeline(spec: Spec) -> list[tuple[str, str]]:
    assert isinstance(spec, DeploymentSpec)
    return [("pipeline", spec.pipeline)]


def _deployment_identity(resource: Resource) -> str:
    spec = resource.spec
    assert isinstance(spec, DeploymentSpec)
    return deployment_identity(spec.pipeline, spec.environment)


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "Agent",
            AgentSpec,
            rank=0,
            fields=(
                "description",
                "system_prompt",
                "provider",
                "model",
                "temperature",
                "max_tokens",
                "tools",
                "is_active",
            ),
            set_fields=frozenset({"tools"}),
        ),
        KindInfo(
            "Policy",
            PolicySpec,
            rank=0,
            checks=(policy_conditions,),
            fields=("description", "effect", "resource_type", "actions", "conditions"),
            set_fields=frozenset({"actions"}),
        ),
        KindInfo(
            "Pipeline",
            PipelineSpec,
            rank=1,
            fields=("description", "pattern", "status", "config"),
            references=(Reference("Agent", _node_agents),),
            checks=(pipeline_graph,),
        ),
        KindInfo(
            "Deployment",
            DeploymentSpec,
            rank=2,
            references=(Reference("Pipeline", _deployment_pipeline),),
            identity=_deployment_identity,
            identity_label="pipeline and environment",
            checks=(deployment_target,),
            set_checks=(promotion_source_exists,),
        ),
    )
}

KIND_NAMES: tuple[str, ...] = tuple(KINDS)
