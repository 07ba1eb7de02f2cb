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
    # Live fields the server owns: never written, never compared.
    server_owned: frozenset[str] = frozenset(
        {"id", "organization_id", "created_by_id", "created_at", "updated_at"}
    )
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
        KindInfo("Agent", AgentSpec, rank=0),
        KindInfo("Policy", PolicySpec, rank=0, checks=(policy_conditions,)),
        KindInfo(
            "Pipeline",
            PipelineSpec,
            rank=1,
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
            server_owned=frozenset(
                {
                    "id",
                    "organization_id",
                    "created_by_id",
                    "created_at",
                    "updated_at",
                    "status",
                    "pipeline_version",
                    "gateway_id",
                }
            ),
        ),
    )
}

KIND_NAMES: tuple[str, ...] = tuple(KINDS)
