"""Pydantic models of the manifest kinds (MANIFESTS.md draft 1).

One model per kind's ``spec``; unknown fields are rejected. Optional fields
default to the contract's server defaults, because a manifest is the whole
desired state of its resource: leaving a line out resets that field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from kaizenctl.api.models import (
    AgentType,
    ConditionOperator,
    Effect,
    Environment,
    NodeType,
    PipelineStatus,
    Provider,
)

API_VERSION = "kaizen.io/v1"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NODE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

# Strict numbers: YAML "0.5" quoted is a string and must not silently become a float.
StrictNumber = Annotated[float, Field(strict=True)]


class ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)
    return values


class Metadata(ManifestModel):
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    annotations: dict[str, str] = Field(default_factory=dict)


class AgentSpec(ManifestModel):
    description: str | None = None
    system_prompt: str = Field(min_length=1)
    # Required by a CONTRACT.md server, refused by one that cannot store it; the
    # server's capability table decides at plan (kaizenctl.reconcile.holdable).
    provider: Provider | None = None
    model: str = Field(min_length=1)
    temperature: StrictNumber = Field(default=0.7, ge=0, le=2)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    tools: list[str] = Field(default_factory=list)
    is_active: StrictBool = True
    # Additive: the studio dialect's agent type (default chat there); fixed once created.
    agent_type: AgentType | None = None

    @field_validator("tools")
    @classmethod
    def _tools_are_a_set(cls, tools: list[str]) -> list[str]:
        return _unique(tools, "tool")


class Position(ManifestModel):
    x: StrictNumber
    y: StrictNumber


class NodeSpec(ManifestModel):
    id: str = Field(pattern=NODE_ID_PATTERN)
    node_type: NodeType
    agent: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    position: Position | None = None


class EdgeSpec(ManifestModel):
    from_: str = Field(alias="from")
    to: str
    source_handle: str | None = None
    target_handle: str | None = None


class PipelineSpec(ManifestModel):
    description: str | None = None
    pattern: str = Field(min_length=1)
    status: PipelineStatus = "draft"
    config: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeSpec] = Field(default_factory=list)
    edges: list[EdgeSpec] = Field(default_factory=list)


class Condition(ManifestModel):
    attribute: str = Field(min_length=1)
    operator: ConditionOperator
    value: Any = None


class PolicySpec(ManifestModel):
    description: str | None = None
    effect: Effect
    resource_type: str = Field(min_length=1)
    actions: list[str] = Field(min_length=1)
    conditions: list[Condition] = Field(default_factory=list)

    @field_validator("actions")
    @classmethod
    def _actions_are_a_set(cls, actions: list[str]) -> list[str]:
        return _unique(actions, "action")


class GatewaySpec(ManifestModel):
    """A gateway an agent is deployed onto (studio dialect). ``api_key`` is write-only."""

    api_url: str = Field(pattern=r"^https?://[^\s]+$")
    environment: Environment
    description: str | None = None
    health_check_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # Only from ${VAR} (a check refuses a literal): it is never printed, diffed or saved.
    api_key: str = Field(min_length=1, repr=False)


class DeploymentSpec(ManifestModel):
    # Exactly one of pipeline (contract dialect) and agent (studio dialect); a check says so.
    pipeline: str | None = None
    agent: str | None = None
    environment: Environment
    # The Gateway (by name) an agent runs on; needed only when the environment has several.
    gateway: str | None = None
    # None means "latest" unless promote_from is set; validation forbids both.
    version: Literal["latest"] | Annotated[int, Field(strict=True, ge=1)] | None = None
    promote_from: Environment | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_latest_or_a_number(cls, version: object) -> object:
        # Checked before the union so a user sees one message, not one per union member.
        if version is None or version == "latest":
            return version
        if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
            return version
        raise ValueError("must be 'latest' or a whole number >= 1")

    @property
    def target(self) -> str:
        """The name of what is deployed: the pipeline or the agent."""
        return self.pipeline or self.agent or ""

    @property
    def target_kind(self) -> str:
        return "Agent" if self.agent is not None else "Pipeline"


Spec = AgentSpec | PipelineSpec | PolicySpec | DeploymentSpec | GatewaySpec


@dataclass(frozen=True, order=True)
class SourceLocation:
    """Where a value came from: file path (or ``<stdin>``), 1-based line and column."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Mark(Protocol):
    """A parser's position: 0-based line and column (PyYAML's ``Mark``)."""

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


class Positions(Mapping[str, SourceLocation]):
    """Document paths -> where each value was written, in one file.

    The loader records a position for every value of every manifest, and a run reads a
    handful of them (for an error, a secret's line): each is kept as the parser's mark and
    becomes a ``SourceLocation`` only when read. ``within("spec.")`` is the same positions
    seen from below a path, sharing the marks rather than copying them.
    """

    __slots__ = ("_marks", "_prefix", "file")

    def __init__(self, file: str, marks: dict[str, Mark] | None = None, prefix: str = "") -> None:
        self.file = file
        self._marks: dict[str, Mark] = {} if marks is None else marks
        self._prefix = prefix

    def record(self, path: str, mark: Mark) -> None:
        self._marks[self._prefix + path] = mark

    def within(self, prefix: str) -> Positions:
        return Positions(self.file, self._marks, self._prefix + prefix)

    def __getitem__(self, path: str) -> SourceLocation:
        mark = self._marks[self._prefix + path]
        return SourceLocation(self.file, mark.line + 1, mark.column + 1)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._prefix + path in self._marks

    def __iter__(self) -> Iterator[str]:
        start = len(self._prefix)
        return (path[start:] for path in self._marks if path.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Positions({dict(self)!r})"


@dataclass(frozen=True)
class Resource:
    """One validated manifest document."""

    kind: str
    name: str
    spec: Spec
    annotations: dict[str, str]
    source: SourceLocation
    # Dotted spec paths (``system_prompt``, ``nodes[0].config.key``) -> where each was written.
    locations: Mapping[str, SourceLocation] = field(default_factory=dict)
    # Spec paths whose value came from ``${VAR}`` substitution: masked in every output.
    sensitive_paths: frozenset[str] = frozenset()

    def location_of(self, path: str) -> SourceLocation:
        """Where ``path`` (or its nearest written parent) is in the manifest."""
        while path:
            if path in self.locations:
                return self.locations[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.source

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"
