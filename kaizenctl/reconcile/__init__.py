"""The reconciler as a library: ``plan`` and ``apply`` without the CLI.

    from kaizenctl.reconcile import plan_async, apply_async

Stages, one module each: ``state`` (the common type), ``live`` (fetch and
normalize), ``diff`` (build the plan value), ``apply`` (execute it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kaizenctl.api.service import KaizenApi
from kaizenctl.manifests.models import Resource
from kaizenctl.reconcile.apply import (
    DEFAULT_DEPLOY_TIMEOUT,
    ApplyResult,
    ProgressCallback,
    StartCallback,
    execute_plan,
)
from kaizenctl.reconcile.diff import PlanOptions, build_plan
from kaizenctl.reconcile.holdable import canonical, check_holdable
from kaizenctl.reconcile.live import LiveSnapshot, fetch_live
from kaizenctl.reconcile.plan import Plan
from kaizenctl.reconcile.state import desired_state

__all__ = [
    "ApplyOptions",
    "ApplyResult",
    "LiveSnapshot",
    "Plan",
    "PlanOptions",
    "apply_async",
    "apply_plan_async",
    "plan_async",
]


@dataclass(frozen=True)
class ApplyOptions:
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT
    # Flags that unlock guarded actions, e.g. "--allow-production-rollback".
    allowed_flags: frozenset[str] = frozenset()


async def plan_async(
    api: KaizenApi, resources: list[Resource], options: PlanOptions | None = None
) -> tuple[Plan, LiveSnapshot]:
    """Fetch live state and diff it against ``resources``. Writes nothing."""
    options = replace(options or PlanOptions(), replace_on_change=dict(api.capabilities.immutable))
    # What the server cannot hold is refused before anything is read.
    check_holdable(resources, api.capabilities)
    desired = desired_state(canonical(resources, api.capabilities))
    wanted_pipelines = set(desired.of_kind("Pipeline"))
    live = await fetch_live(
        api,
        # Unmanaged graphs matter only when pruning (which agents they still hold).
        pipelines_in_scope=lambda name: options.prune or name in wanted_pipelines,
    )
    return build_plan(desired, live, options), live


async def apply_plan_async(
    api: KaizenApi,
    plan: Plan,
    live: LiveSnapshot,
    options: ApplyOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    on_start: StartCallback | None = None,
) -> ApplyResult:
    options = options or ApplyOptions()
    return await execute_plan(
        api,
        plan,
        live,
        deploy_timeout=options.deploy_timeout,
        allowed_flags=options.allowed_flags,
        on_progress=on_progress,
        on_start=on_start,
    )


async def apply_async(
    api: KaizenApi,
    resources: list[Resource],
    plan_options: PlanOptions | None = None,
    options: ApplyOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> tuple[Plan, ApplyResult]:
    """Plan, then execute that plan. Refuses guarded actions before any write."""
    plan, live = await plan_async(api, resources, plan_options)
    # execute_plan refuses guarded actions before its first write.
    result = await apply_plan_async(api, plan, live, options, on_progress=on_progress)
    return plan, result
