"""Typed models of the Kaizen Studio API's objects (CONTRACT.md, seed ``types/models.ts``).

These are the dialect-independent shapes the rest of kaizenctl works on. A
dialect module parses its wire format into these. Unknown response fields are
ignored (CONTRACT: "A response may carry fields this page does not name").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Provider = Literal["openai", "anthropic", "azure", "ollama"]
# The studio dialect's agent types (additive manifest field; the contract has none).
AgentType = Literal["chat", "task", "pipeline", "custom"]
PipelineStatus = Literal["draft", "active", "archived"]
NodeType = Literal["agent", "supervisor", "router", "synthesizer", "connector"]
Environment = Literal["development", "staging", "production"]
DeploymentStatus = Literal["pending", "deploying", "active", "failed", "stopped"]
Effect = Literal["allow", "deny"]
ConditionOperator = Literal["eq", "ne", "gt", "lt", "in", "contains", "regex"]
LogLevel = Literal["debug", "info", "warn", "error"]

ENVIRONMENTS: tuple[Environment, ...] = ("development", "staging", "production")
SETTLED_DEPLOYMENT_STATUSES: frozenset[str] = frozenset({"active", "failed", "stopped"})


class ApiObject(BaseModel):
    """Base of every API object: extra fields ignored, instances immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class User(ApiObject):
    id: str
    email: str
    full_name: str = ""
    organization_id: str
    role: str = ""
    is_active: bool = True
    created_at: str = ""


class AuthTokens(ApiObject):
    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    token_type: str = "bearer"


class Agent(ApiObject):
    id: str
    name: str
    description: str | None = None
    system_prompt: str
    # None where the server has no such field (the studio dialect stores only a model id).
    provider: str | None = None
    model: str
    temperature: float = 0.7
    max_tokens: int | None = None
    tools: list[str] = Field(default_factory=list)
    is_active: bool = True
    # None where the server has none (the contract) or it is the server's default.
    agent_type: str | None = None
    organization_id: str = ""
    created_by_id: str = ""
    created_at: str = ""
    updated_at: str = ""


class AgentVersion(ApiObject):
    id: str
    agent_id: str
    version: int
    snapshot: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""
    created_by_id: str = ""


class Pipeline(ApiObject):
    id: str
    name: str
    description: str | None = None
    status: str = "draft"
    pattern: str
    config: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    organization_id: str = ""
    created_by_id: str = ""
    created_at: str = ""
    updated_at: str = ""


class PipelineNode(ApiObject):
    """A stored node, in the service layer's words (each dialect maps its wire to these)."""

    id: str
    pipeline_id: str = ""
    node_type: str
    agent_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    x: float = 0
    y: float = 0


class PipelineConnection(ApiObject):
    """A stored edge between two nodes, by node id."""

    id: str = ""
    pipeline_id: str = ""
    source: str
    target: str
    source_handle: str | None = None
    target_handle: str | None = None


class Deployment(ApiObject):
    id: str
    pipeline_id: str
    pipeline_version: int
    environment: str
    status: str
    gateway_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    organization_id: str = ""
    created_by_id: str = ""
    created_at: str = ""
    updated_at: str = ""


class DeploymentLog(ApiObject):
    timestamp: str
    level: str
    message: str


class PolicyCondition(ApiObject):
    attribute: str
    operator: str
    value: Any = None


class Policy(ApiObject):
    id: str
    name: str
    description: str | None = None
    effect: str
    resource_type: str
    actions: list[str]
    conditions: list[PolicyCondition] = Field(default_factory=list)
    organization_id: str = ""


# ---- write shapes: what kaizenctl sends, independent of any dialect's wire format ----


class GraphNode(ApiObject):
    """One node of a ``PUT /nodes`` body: agent references already resolved to ids."""

    id: str
    node_type: str
    agent_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    x: float = 0
    y: float = 0


class GraphEdge(ApiObject):
    source: str
    target: str
    source_handle: str | None = None
    target_handle: str | None = None


class Graph(ApiObject):
    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)


# ---- agents on gateways (servers that deploy agents, not pipelines) -------------------


class Gateway(ApiObject):
    """A gateway agents are deployed onto. Its api_key is write-only: never read back."""

    id: str
    name: str
    api_url: str
    environment: str
    description: str | None = None
    health_check_url: str | None = None
    status: str = "active"
    organization_id: str = ""
    created_at: str = ""


class AgentDeployment(ApiObject):
    """One deployment of an agent onto a gateway; ``failed`` ones carry ``error_message``."""

    id: str
    agent_id: str
    gateway_id: str
    status: str
    agent_version_id: str | None = None
    registration_id: str | None = None
    endpoint_url: str | None = None
    error_message: str | None = None
    deployed_at: str = ""
    stopped_at: str = ""
    created_at: str = ""
    organization_id: str = ""


class Promotion(ApiObject):
    """A request to deploy what runs on a source deployment onto a target gateway."""

    id: str
    agent_id: str
    source_deployment_id: str
    target_gateway_id: str
    source_environment: str
    target_environment: str
    status: str
    requires_approval: bool = False
    approved_by: str | None = None
    rejection_reason: str | None = None
    target_deployment_id: str | None = None
    created_at: str = ""
    completed_at: str = ""
    organization_id: str = ""


class AgentDeploymentLog(ApiObject):
    event_type: str
    message: str
    created_at: str = ""
