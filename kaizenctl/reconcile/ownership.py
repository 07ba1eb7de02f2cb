"""Apply's side of ownership: announce before writing, confirm after.

Before the first write, the set's record is rewritten with what the plan will
own: the members that are live, the resources it adopts, and an *intent* (a
member without id) for each create. After the last action it is rewritten with
the ids the creates got and without what was deleted. If the second write never
happens (a lost answer, SIGKILL, a lost lock), nothing is orphaned: the next
plan resolves the intents by name and drops members that are gone. Both writes
happen only when the record would change.
"""

from __future__ import annotations

from collections.abc import Iterable

from kaizenctl.kinds import KINDS
from kaizenctl.ownership.inventory import Member, OwnershipView, normalized
from kaizenctl.reconcile.apply import ApplyResult
from kaizenctl.reconcile.plan import Plan

# A create that never started (or was skipped) did not happen: its intent goes.
NOT_HAPPENED = frozenset({"not-started", "skipped"})


def _listed(kind: str) -> bool:
    """Kinds with a named-object service are listed; a deployment follows what it deploys."""
    return KINDS[kind].service is not None


def intent_members(view: OwnershipView, plan: Plan) -> tuple[Member, ...]:
    """What the record must say before the plan's first write."""
    members = list(view.members)
    members += [Member(kind=a.kind, name=a.name, id=a.live_id) for a in plan.adopt]
    members += [
        Member(kind=a.kind, name=a.name)
        for a in plan.actions
        if a.verb == "create" and _listed(a.kind)
    ]
    return normalized(members)


def final_members(
    intent: Iterable[Member], plan: Plan, result: ApplyResult, created: dict[str, str]
) -> tuple[Member, ...]:
    """What the record says after the apply: creates confirmed, deletes gone."""
    status = {o.action_id: o.status for o in result.outcomes}
    deleted_ids = {
        a.live_id
        for a in plan.actions
        if a.verb == "delete" and _listed(a.kind) and status.get(a.id) == "done"
    }
    create_status = {
        a.ref: status.get(a.id, "not-started") for a in plan.actions if a.verb == "create"
    }
    members: list[Member] = []
    for member in intent:
        if member.id is not None:
            if member.id not in deleted_ids:
                members.append(member)
            continue
        new_id = created.get(member.ref)
        if new_id is not None:
            members.append(member.model_copy(update={"id": new_id}))
        elif create_status.get(member.ref) not in NOT_HAPPENED:
            members.append(member)  # failed or interrupted: it may exist; the next plan knows
    return normalized(members)


def needs_write(view: OwnershipView, members: tuple[Member, ...]) -> bool:
    if view.record_id is None:
        return bool(members)
    return normalized(view.stored) != members
