"""Request and response bodies, strict as CONTRACT.md's "Bodies" section says.

Request models forbid unknown fields and use pydantic's strict mode: a string or
boolean where a number is expected is a 422, and so is a fraction in an integer
field (an integral float such as ``2.0`` is accepted: numbers compare by value).
In a PATCH, leaving a field out means "unchanged"; ``null`` is accepted only for
the nullable fields (``description``, ``max_tokens``) and answers 422 elsewhere.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from kaizenctl.api.models import (
    ConditionOperator,
    DeploymentStatus,
    Effect,
    Environment,
    LogLevel,
    NodeType,
    PipelineStatus,
    Provider,
)

# The contract's enums are declared once, beside the client's models of the same objects.
Operator = ConditionOperator
SortOrder = Literal["asc", "desc"]


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must contain only printable characters")
    return value


def _integral(value: object) -> object:
    # Numbers compare by value: 2.0 is the integer 2; 2.5 stays a float and fails.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not contain duplicates")
    return values


Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]
Integer = Annotated[int, BeforeValidator(_integral)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Temperature = Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]
MaxTokens = Annotated[int, BeforeValidator(_integral), Field(ge=1, le=2**31 - 1)]
UniqueStrings = Annotated[list[str], AfterValidator(_unique)]
NonEmpty = Annotated[str, Field(min_length=1)]
Json = dict[str, Any]


def _check_json(value: object, depth: int = 0) -> None:
    """Reject what could not be stored or sent back: lone surrogates, NaN, deep nests."""
    if depth > 32:
        raise ValueError("nested too deeply")
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError is a ValueError
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**63:
            raise ValueError("integer out of range")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


class Body(BaseModel):
    """Base of request bodies: strict, closed, and storable."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        _check_json(data)
        return data


class Patch(Body):
    """Base of PATCH bodies: ``null`` only where the field is nullable."""

    nullable: ClassVar[frozenset[str]] = frozenset({"description", "max_tokens"})

    def null_fields(self) -> list[str]:
        """Fields sent as ``null`` that may not be null (the route answers 422)."""
        return sorted(
            k for k in self.model_fields_set if getattr(self, k) is None and k not in self.nullable
        )


# ---- auth ----


class RegisterIn(Body):
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    password: Annotated[str, Field(min_length=8, max_length=256)]
    full_name: Annotated[str, Field(max_length=256)]
    organization_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class RefreshIn(Body):
    refresh_token: str


class LogoutIn(Body):
    refresh_token: str | None = None


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"


class UserOut(BaseModel):
    id: str
    email: str
    full_name: str
    organization_id: str
    role: str
    is_active: bool
    created_at: str


class RegisterOut(BaseModel):
    user: UserOut
    tokens: TokensOut


# ---- agents ----


class AgentCreate(Body):
    name: Name
    description: str | None = None
    system_prompt: str
    provider: Provider
    model: str
    temperature: Temperature = 0.7
    max_tokens: MaxTokens | None = None
    tools: UniqueStrings = Field(default_factory=list)
    is_active: bool = True


class AgentPatch(Patch):
    name: Name | None = None
    description: str | None = None
    system_prompt: str | None = None
    provider: Provider | None = None
    model: str | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    tools: UniqueStrings | None = None
    is_active: bool | None = None


class AgentOut(BaseModel):
    id: str
    name: str
    description: str | None
    system_prompt: str
    provider: Provider
    model: str
    temperature: float
    max_tokens: int | None
    tools: list[str]
    is_active: bool
    organization_id: str
    created_by_id: str
    created_at: str
    updated_at: str


class AgentVersionOut(BaseModel):
    id: str
    agent_id: str
    version: int
    snapshot: Json
    created_at: str
    created_by_id: str


# ---- pipelines ----


class PipelineCreate(Body):
    name: Name
    description: str | None = None
    status: PipelineStatus = "draft"
    pattern: NonEmpty
    config: Json = Field(default_factory=dict)


class PipelinePatch(Patch):
    name: Name | None = None
    description: str | None = None
    status: PipelineStatus | None = None
    pattern: NonEmpty | None = None
    config: Json | None = None


class PipelineOut(BaseModel):
    id: str
    name: str
    description: str | None
    status: PipelineStatus
    pattern: str
    config: Json
    version: int
    organization_id: str
    created_by_id: str
    created_at: str
    updated_at: str


class NodeIn(Body):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    node_type: NodeType
    agent_id: str | None = None
    config: Json = Field(default_factory=dict)
    position_x: Number = 0.0
    position_y: Number = 0.0
    pipeline_id: Any = Field(default=None, description="Accepted and ignored.")


class EdgeIn(Body):
    source_node_id: str
    target_node_id: str
    source_handle: str | None = None
    target_handle: str | None = None
    id: Any = Field(default=None, description="Accepted and ignored.")
    pipeline_id: Any = Field(default=None, description="Accepted and ignored.")


class GraphIn(Body):
    nodes: list[NodeIn]
    edges: list[EdgeIn]


class NodeOut(BaseModel):
    id: str
    pipeline_id: str
    node_type: NodeType
    agent_id: str | None
    config: Json
    position_x: float
    position_y: float


class ConnectionOut(BaseModel):
    id: str
    pipeline_id: str
    source_node_id: str
    target_node_id: str
    source_handle: str | None
    target_handle: str | None


# ---- deployments ----


class DeploymentCreate(Body):
    pipeline_id: str
    environment: Environment
    config: Json = Field(default_factory=dict)


class PromoteIn(Body):
    target_environment: Environment


class DeploymentOut(BaseModel):
    id: str
    pipeline_id: str
    pipeline_version: int
    environment: Environment
    status: DeploymentStatus
    gateway_id: str
    config: Json
    organization_id: str
    created_by_id: str
    created_at: str
    updated_at: str


class DeploymentLogOut(BaseModel):
    timestamp: str
    level: LogLevel
    message: str


# ---- policies ----


class ConditionIn(Body):
    attribute: Annotated[str, Field(min_length=1)]
    operator: Operator
    # Required like every other key; null is a value (for eq/ne), a missing key is not.
    value: Any

    @model_validator(mode="after")
    def _value_fits_operator(self) -> ConditionIn:
        if self.value is None and self.operator not in ("eq", "ne"):
            raise ValueError(f"operator {self.operator!r} needs a value")
        if self.operator == "in" and not isinstance(self.value, list):
            raise ValueError("operator 'in' takes a list")
        if self.operator == "regex":
            if not isinstance(self.value, str):
                raise ValueError("operator 'regex' takes a string pattern")
            try:
                re.compile(self.value)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return self


class PolicyCreate(Body):
    name: Name
    description: str | None = None
    effect: Effect
    resource_type: NonEmpty
    actions: Annotated[UniqueStrings, Field(min_length=1)]
    conditions: list[ConditionIn] = Field(default_factory=list)


class PolicyPatch(Patch):
    name: Name | None = None
    description: str | None = None
    effect: Effect | None = None
    resource_type: NonEmpty | None = None
    actions: Annotated[UniqueStrings, Field(min_length=1)] | None = None
    conditions: list[ConditionIn] | None = None


class ConditionOut(BaseModel):
    attribute: str
    operator: Operator
    value: Any = None


class PolicyOut(BaseModel):
    id: str
    name: str
    description: str | None
    effect: Effect
    resource_type: str
    actions: list[str]
    conditions: list[ConditionOut]
    organization_id: str
    created_by_id: str
    created_at: str
    updated_at: str


# ---- common ----

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int
    total_pages: int


class ErrorOut(BaseModel):
    detail: str
