"""The reconciler as a library: ``plan`` and ``apply`` without the CLI.

    from kaizenctl.reconcile import plan_async, apply_async

Stages, one module each: ``state`` (the common type), ``live`` (fetch and
normalize), ``diff`` (build the plan value), ``apply`` (execute it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import KaizenctlError
from kaizenctl.manifests.models import Resource
from kaizenctl.ownership.inventory import write_inventory
from kaizenctl.ownership.lock import HeldLock, LockOptions, read_claims, set_lock
from kaizenctl.reconcile.apply import (
    DEFAULT_DEPLOY_TIMEOUT,
    ApplyResult,
    ProgressCallback,
    StartCallback,
    check_flags,
    execute_plan,
)
from kaizenctl.reconcile.diff import PlanOptions, build_plan
from kaizenctl.reconcile.holdable import canonical, check_holdable
from kaizenctl.reconcile.live import LiveSnapshot, fetch_live
from kaizenctl.reconcile.ownership import final_members, intent_members, needs_write
from kaizenctl.reconcile.plan import Plan
from kaizenctl.reconcile.state import desired_state

__all__ = [
    "ApplyOptions",
    "ApplyResult",
    "LiveSnapshot",
    "LockOptions",
    "Plan",
    "PlanOptions",
    "apply_async",
    "apply_plan_async",
    "plan_async",
    "record_changes",
]


@dataclass(frozen=True)
class ApplyOptions:
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT
    # Flags that unlock guarded actions, e.g. "--allow-production-rollback".
    allowed_flags: frozenset[str] = frozenset()
    # The set lock: how long to wait for it, its lease, and the clock it is judged by.
    lock: LockOptions = field(default_factory=LockOptions)


async def plan_async(
    api: KaizenApi,
    resources: list[Resource],
    options: PlanOptions | None = None,
    *,
    held_lock: HeldLock | None = None,
) -> tuple[Plan, LiveSnapshot]:
    """Fetch live state and diff it against ``resources``. Writes nothing, takes no lock."""
    options = replace(options or PlanOptions(), replace_on_change=dict(api.capabilities.immutable))
    # What the server cannot hold is refused before anything is read.
    check_holdable(resources, api.capabilities)
    desired = desired_state(canonical(resources, api.capabilities))
    wanted_pipelines = set(desired.of_kind("Pipeline"))
    pruning = options.prune or options.prune_unmanaged
    live = await fetch_live(
        api,
        # Other graphs matter only when pruning (which agents they still hold).
        pipelines_in_scope=lambda name: pruning or name in wanted_pipelines,
        set_name=options.set_name,
    )
    plan = build_plan(desired, live, options)
    others = [
        claim
        for claim in read_claims(live.records, options.set_name)
        if held_lock is None or claim.record.id != held_lock.record.id
    ]
    if others:
        notes = tuple(
            f"set {options.set_name!r} is being applied by {claim.describe()}: "
            "live state may move before this plan is applied"
            for claim in others
        )
        plan = plan.model_copy(update={"notes": plan.notes + notes})
    return plan, live


def record_changes(plan: Plan, live: LiveSnapshot) -> bool:
    """True when applying ``plan`` rewrites the set's ownership record (even with no action)."""
    view = live.ownership
    return view is not None and needs_write(view, intent_members(view, plan))


async def apply_plan_async(
    api: KaizenApi,
    plan: Plan,
    live: LiveSnapshot,
    options: ApplyOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    on_start: StartCallback | None = None,
    lock: HeldLock | None = None,
) -> ApplyResult:
    """Execute ``plan``; the set's ownership record is announced before and confirmed after.

    Call it holding the set's lock (``set_lock``); ``apply_async`` does.
    """
    options = options or ApplyOptions()
    view = live.ownership
    clock, by = options.lock.clock, options.lock.holder
    record_id = view.record_id if view is not None else None
    intent = intent_members(view, plan) if view is not None else ()
    if view is not None and needs_write(view, intent):
        check_flags(plan, options.allowed_flags)  # refused before any write, the record's too
        record_id = await write_inventory(api.records, view, record_id, intent, now=clock(), by=by)
    created: dict[str, str] = {}
    result = await execute_plan(
        api,
        plan,
        live,
        deploy_timeout=options.deploy_timeout,
        allowed_flags=options.allowed_flags,
        on_progress=on_progress,
        on_start=on_start,
        on_created=lambda action, new_id: created.__setitem__(action.ref, new_id),
    )
    if view is not None and not (lock is not None and lock.lost):
        final = final_members(intent, plan, result, created)
        if final != intent:
            # If this fails the intents stay: the next plan resolves them against live state.
            with contextlib.suppress(KaizenctlError):
                await write_inventory(api.records, view, record_id, final, now=clock(), by=by)
    return result


async def apply_async(
    api: KaizenApi,
    resources: list[Resource],
    plan_options: PlanOptions | None = None,
    options: ApplyOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> tuple[Plan, ApplyResult]:
    """Plan, take the set's lock, plan again and execute that plan.

    The first plan takes no lock and writes nothing: bad input, a guarded action
    without its flag and "nothing to do" end there, with no write at all (not even
    the lock's). The plan that counts is the one made under the lock.
    """
    plan_options = plan_options or PlanOptions()
    options = options or ApplyOptions()
    first, first_live = await plan_async(api, resources, plan_options)
    if not first.has_changes and not record_changes(first, first_live):
        return first, ApplyResult(outcomes=())
    check_flags(first, options.allowed_flags)
    async with set_lock(api.records, plan_options.set_name, options.lock) as held:
        plan, live = await plan_async(api, resources, plan_options, held_lock=held)
        result = await apply_plan_async(
            api, plan, live, options, on_progress=on_progress, lock=held
        )
    return plan, result
