"""The plan is a value: a frozen model that ``plan`` builds, renders and saves,
and that ``apply`` executes. Building it has no side effects.

Each action carries one typed payload, the one its verb executes, in the
planner's own words (references by name, positions as ``x``/``y``, edges as
``source``/``target``); a dialect turns it into its wire shape. What is there
only to be looked at (``Action.drawing``, a graph change marked for a diagram)
is kept apart from the payload, and apply never reads it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLAN_FORMAT_VERSION = 2

# "stop": an extra active deployment of an agent on a gateway is stopped (one must remain).
Verb = Literal[
    "create", "update", "delete", "replace-graph", "deploy", "promote", "rollback", "stop"
]

# Terraform's symbols: how each verb is drawn.
VERB_SYMBOLS: dict[str, str] = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "replace-graph": "~",
    "deploy": "»",
    "promote": "»",
    "rollback": "«",
    "stop": "-",
}


class PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldChange(PlanModel):
    """One field of one resource, before → after. ``sensitive`` values are never shown."""

    field: str
    before: Any = None
    after: Any = None
    sensitive: bool = False


class CreatePayload(PlanModel):
    """``create``: every field of the new resource, its name included."""

    type: Literal["create"] = "create"
    fields: dict[str, Any]
    # The second half of a replace (a field the server cannot change moved).
    replace: bool = False


class UpdatePayload(PlanModel):
    """``update``: only the fields that change."""

    type: Literal["update"] = "update"
    changes: dict[str, Any]


class GatewayUpdatePayload(PlanModel):
    """``update`` of a gateway: its changed fields, and the key and its stamp.

    The key is write-only on the server, so the description carries a digest of the
    key last sent (the stamp); both are rewritten together.
    """

    type: Literal["gateway-update"] = "gateway-update"
    # The changed fields but the key (never shown, never compared).
    changes: dict[str, Any]
    # The description people wrote, without the stamp.
    description: str | None = None
    # The stamp the gateway carries now (kept when the key is not re-sent).
    key_stamp: str | None = None
    # Set only when the key is re-sent.
    api_key: str | None = None


class DeletePayload(PlanModel):
    """``delete`` of a named resource: its ``live_id`` is all it needs."""

    type: Literal["delete"] = "delete"
    # The first half of a replace: it does not empty the kind.
    replace: bool = False


class UndeployPayload(PlanModel):
    """``delete`` of a pipeline's deployment slot: every deployment of it that still runs."""

    type: Literal["undeploy"] = "undeploy"
    deployment_ids: tuple[str, ...]


class StopPayload(PlanModel):
    """``stop`` (or a pruning ``delete``) of agent deployments on a gateway."""

    type: Literal["stop"] = "stop"
    deployment_ids: tuple[str, ...]


class PlannedNode(PlanModel):
    id: str
    node_type: str
    # The referenced resource by name; apply resolves it to an id.
    agent: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    x: float
    y: float


class PlannedEdge(PlanModel):
    source: str
    target: str
    source_handle: str | None = None
    target_handle: str | None = None


class GraphPayload(PlanModel):
    """``replace-graph``: the whole desired graph, written at once."""

    type: Literal["graph"] = "graph"
    nodes: tuple[PlannedNode, ...]
    edges: tuple[PlannedEdge, ...]


class SlotPayload(PlanModel):
    """``deploy``, ``promote`` or ``rollback`` of one (pipeline, environment)."""

    type: Literal["slot"] = "slot"
    pipeline: str
    environment: str
    # The version the slot runs afterwards; None when only the server can tell.
    expected_version: int | None
    # The Deployment manifest's name (``--target Deployment/<name>``).
    deployment: str
    # promote only: the environment whose active deployment is promoted.
    source_environment: str | None = None


class AgentSlot(PlanModel):
    """One agent in one environment, on that environment's gateway."""

    agent: str
    environment: str
    gateway: str
    # None when this plan creates the gateway (apply learns its id then).
    gateway_id: str | None = None
    # The Deployment manifest's name (``--target Deployment/<name>``).
    deployment: str
    # The live deployment the new one replaces: stopped once the new one is active.
    replaces: tuple[str, ...] = ()

    @property
    def slot(self) -> str:
        """"agent/environment", as the planner keys what runs where."""
        return f"{self.agent}/{self.environment}"


class AgentDeployPayload(AgentSlot):
    """``deploy`` of an agent's current config onto the gateway of an environment."""

    type: Literal["agent-deploy"] = "agent-deploy"


class AgentPromotePayload(AgentSlot):
    """``promote`` of what an earlier environment runs to this one."""

    type: Literal["agent-promote"] = "agent-promote"
    source_environment: str
    # A promotion already asked for that waits for approval, or that was rejected: apply
    # reports it and never asks again.
    pending_promotion: str | None = None
    rejected_promotion: str | None = None

    @property
    def source_slot(self) -> str:
        return f"{self.agent}/{self.source_environment}"


ActionPayload = (
    CreatePayload
    | UpdatePayload
    | GatewayUpdatePayload
    | DeletePayload
    | UndeployPayload
    | StopPayload
    | GraphPayload
    | SlotPayload
    | AgentDeployPayload
    | AgentPromotePayload
)
# Read back (a saved plan) by its ``type``.
Payload = Annotated[ActionPayload, Field(discriminator="type")]

# Which payloads each verb may carry (a pruned agent deployment is a delete that stops it).
VERB_PAYLOADS: dict[str, tuple[type[PlanModel], ...]] = {
    "create": (CreatePayload,),
    "update": (UpdatePayload, GatewayUpdatePayload),
    "delete": (DeletePayload, UndeployPayload, StopPayload),
    "replace-graph": (GraphPayload,),
    "deploy": (SlotPayload, AgentDeployPayload),
    "promote": (SlotPayload, AgentPromotePayload),
    "rollback": (SlotPayload,),
    "stop": (StopPayload,),
}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _payload_types(verb: str) -> list[str]:
    return [str(model.model_fields["type"].default) for model in VERB_PAYLOADS[verb]]


class DrawnNode(PlanModel):
    id: str
    node_type: str
    agent: str | None = None
    # The agent a node had before, when the change gives it another.
    agent_before: str | None = None
    mark: Literal["added", "removed", "changed", "same"]


class DrawnEdge(PlanModel):
    source: str
    target: str
    handles: str = ""
    mark: Literal["added", "removed", "same"]


class GraphDrawing(PlanModel):
    """Display only: every node and edge of a graph change, marked, for a diagram."""

    nodes: tuple[DrawnNode, ...]
    edges: tuple[DrawnEdge, ...]


class Action(PlanModel):
    id: str
    verb: Verb
    kind: str
    name: str
    summary: str
    changes: tuple[FieldChange, ...] = ()
    depends_on: tuple[str, ...] = ()
    live_id: str | None = None
    # What the executor does, with references still by name (resolved at apply time);
    # None only in a plan made to be looked at (apply refuses to run it).
    payload: Payload
    # Display only (renderers); never executed.
    drawing: GraphDrawing | None = None
    warnings: tuple[str, ...] = ()
    # A flag apply must be given before it runs this action (e.g. a production rollback).
    requires_flag: str | None = None
    # Where the manifest behind this action was written ("file:line"), if any.
    source: str | None = None

    @model_validator(mode="after")
    def _payload_fits_the_verb(self) -> Action:
        if not isinstance(self.payload, VERB_PAYLOADS[self.verb]):
            raise ValueError(
                f"{_a(self.verb)} action cannot carry {_a(self.payload.type)} payload"
                f" (it carries {' or '.join(_a(t) for t in _payload_types(self.verb))} payload)"
            )
        return self

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


class Unmanaged(PlanModel):
    """A live resource no manifest of this set describes: listed, not a change (unless pruned).

    ``owners`` are the sets whose inventory holds it: none (made by hand: unmanaged,
    deleted only with --prune-unmanaged), this set (no longer declared: --prune
    deletes it) or another set (never deleted by this one). ``held_by`` names the
    resources that still use it, which keep it from being deleted.
    """

    kind: str
    name: str
    live_id: str
    owners: tuple[str, ...] = ()
    held_by: tuple[str, ...] = ()


class Adoption(PlanModel):
    """A declared resource that is live and owned by no set: apply records it as this set's."""

    kind: str
    name: str
    live_id: str


class Plan(PlanModel):
    format_version: int = PLAN_FORMAT_VERSION
    actions: tuple[Action, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    prune: bool = False
    # --target values in effect: the plan leaves out what they do not depend on.
    targets: tuple[str, ...] = ()
    prune_unmanaged: bool = False
    # The manifest set this plan is for, and whether it had an ownership record yet.
    set_name: str = "default"
    has_record: bool = True
    # Declared, live, owned by nobody: recorded as this set's by apply. Taking ownership
    # changes nothing on the resources, so it alone is not a change (--detailed-exitcode 0).
    adopt: tuple[Adoption, ...] = ()
    # What the plan says beyond its actions: a resource kept because something still uses
    # it, one listed by two sets, another apply of this set under way.
    notes: tuple[str, ...] = ()

    @property
    def targeting_warning(self) -> str | None:
        """What a reader must know when --target left part of the manifests out."""
        if not self.targets:
            return None
        return (
            f"--target is in effect: this plan covers only {', '.join(self.targets)} and "
            "what it depends on; other differences from the manifests are left out "
            "(plan without --target to see them all)"
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """Targeting if in effect, the plan's notes, then every action's warnings."""
        targeting = (self.targeting_warning,) if self.targeting_warning else ()
        return targeting + self.notes + tuple(
            f"{a.ref}: {warning}" for a in self.actions for warning in a.warnings
        )

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action.verb] = counts.get(action.verb, 0) + 1
        return counts

    def action(self, action_id: str) -> Action:
        for action in self.actions:
            if action.id == action_id:
                return action
        raise KeyError(action_id)
