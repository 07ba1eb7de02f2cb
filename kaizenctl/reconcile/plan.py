"""The plan is a value: a frozen model that ``plan`` builds, renders and saves,
and that ``apply`` executes. Building it has no side effects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT_VERSION = 1

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


class Action(PlanModel):
    id: str
    verb: Verb
    kind: str
    name: str
    summary: str
    changes: tuple[FieldChange, ...] = ()
    depends_on: tuple[str, ...] = ()
    live_id: str | None = None
    # What the executor sends, with references still by name (resolved at apply time).
    payload: dict[str, Any] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # A flag apply must be given before it runs this action (e.g. a production rollback).
    requires_flag: str | None = None
    # Where the manifest behind this action was written ("file:line"), if any.
    source: str | None = None

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
