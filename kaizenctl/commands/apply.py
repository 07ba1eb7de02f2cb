"""`kaizenctl apply`: make live state match the manifests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from kaizenctl.commands.common import plan_options
from kaizenctl.commands.options import ENVIRONMENT_HELP, connection_options

if TYPE_CHECKING:
    from kaizenctl.api.service import KaizenApi
    from kaizenctl.ownership.lock import HeldLock
    from kaizenctl.reconcile import Plan

EXIT_INTERRUPTED = 130
# Everything else done, and at least one promotion waits for people to approve it on the
# platform: not a failure, not done either (README: "Exit codes").
EXIT_AWAITING_APPROVAL = 3


@click.command("apply", epilog=ENVIRONMENT_HELP)
@plan_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking (required in CI).")
@click.option(
    "--allow-production-delete",
    is_flag=True,
    help="Allow undeploying a production deployment.",
)
@click.option(
    "--allow-production-rollback",
    is_flag=True,
    help="Allow rolling back a production deployment.",
)
@click.option(
    "--deploy-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds to wait for each deploy, promote or rollback to settle.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for another apply of the set to finish; 0 refuses at once.",
)
@click.option(
    "--plan",
    "plan_file",
    metavar="FILE",
    default=None,
    help="Apply exactly this saved plan (from `plan --out`), or refuse if live state moved.",
)
@connection_options
def command(
    paths: tuple[str, ...],
    set_name: str | None,
    prune: bool,
    prune_unmanaged: bool,
    targets: tuple[str, ...],
    allow_delete_all: bool,
    output_format: str,
    no_color: bool,
    auto_approve: bool,
    allow_production_delete: bool,
    allow_production_rollback: bool,
    deploy_timeout: float,
    lock_timeout: float,
    plan_file: str | None,
    **connection: Any,
) -> None:
    """Make live state match the manifests: plan, confirm, then execute in dependency order.

    PATH is a manifest file, a folder (read recursively) or - for standard input.
    Exit 1 when any action failed (or a promotion was rejected), 3 when everything
    else is done and a promotion waits for approval on the platform (apply again
    once it is approved), 130 when interrupted; the report lists what was done,
    what failed and what never started, and running again converges.
    """
    from kaizenctl.api.connect import open_api
    from kaizenctl.commands.common import (
        build_plan_options,
        load_resources,
        plan_context,
        plan_with_progress,
        resolve_set_name,
        use_color,
    )
    from kaizenctl.commands.options import settings_from_options
    from kaizenctl.commands.progress import Heartbeat
    from kaizenctl.errors import ApplyError, UsageError
    from kaizenctl.ownership.lock import LockLostError, LockOptions, set_lock
    from kaizenctl.reconcile import ApplyOptions, ApplyResult, apply_plan_async, record_changes
    from kaizenctl.reconcile.apply import check_flags
    from kaizenctl.reconcile.diff import ALLOW_PRODUCTION_DELETE, ALLOW_PRODUCTION_ROLLBACK
    from kaizenctl.reconcile.plan import Action
    from kaizenctl.render import render_apply, render_plan

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not auto_approve and not interactive:
        raise UsageError(
            "refusing to apply unattended without --auto-approve (nothing was changed)"
        )
    if plan_file is None and not paths:
        raise UsageError("missing PATH: give manifests, or a saved plan with --plan FILE")
    if plan_file is not None and (paths or prune or prune_unmanaged or targets):
        raise UsageError(
            "--plan applies a saved plan exactly as it was made: give no PATH, "
            "--prune, --prune-unmanaged or --target with it (nothing was changed)"
        )
    resources = load_resources(paths) if plan_file is None else []
    saved = None
    if plan_file is not None:
        from kaizenctl.gitops.saved_plan import read_saved_plan, saved_set_name

        saved = read_saved_plan(plan_file)
        given = resolve_set_name(set_name)
        if (set_name or "KAIZEN_SET" in os.environ) and given != saved_set_name(saved):
            raise UsageError(
                f"--plan {plan_file} was made for set {saved_set_name(saved)!r}, not {given!r} "
                "(nothing was changed)"
            )
    options = build_plan_options(
        prune=prune,
        prune_unmanaged=prune_unmanaged,
        set_name=set_name if saved is None else saved_set_name(saved),
        targets=targets,
        allow_delete_all=allow_delete_all,
    )
    allowed = frozenset(
        flag
        for flag, given in (
            (ALLOW_PRODUCTION_DELETE, allow_production_delete),
            (ALLOW_PRODUCTION_ROLLBACK, allow_production_rollback),
        )
        if given
    )
    apply_options = ApplyOptions(
        deploy_timeout=deploy_timeout,
        allowed_flags=allowed,
        lock=LockOptions(timeout=lock_timeout),
    )
    settings = settings_from_options(**connection)
    fmt: Any = output_format
    color = use_color(no_color=no_color)
    progress_on = sys.stderr.isatty()

    lost = False

    async def run() -> ApplyResult | None:
        nonlocal lost
        async with open_api(settings) as api:
            # First without the lock, reading only: bad input, a stale saved plan, a guarded
            # action without its flag and "nothing to do" end here with no write at all.
            if saved is not None:
                from kaizenctl.gitops.saved_plan import check_saved_plan

                first, first_live = await check_saved_plan(api, saved)
            else:
                first, first_live = await plan_with_progress(
                    api, resources, options, settings.api_url
                )
            if not first.has_changes and not record_changes(first, first_live):
                await show(api, first)
                return None
            check_flags(first, allowed)
            # The lock is held from the plan that counts to the last write (plan takes none).
            async with set_lock(api.records, options.set_name, apply_options.lock) as held:
                result = await locked(api, held)
                lost = held.lost
            return result

    async def show(api: KaizenApi, plan: Plan) -> None:
        # JSON: one document per line (the plan, then the result), so a pipe can split them.
        context = await plan_context(api) if fmt == "markdown" else None
        rendered = render_plan(plan, fmt, color=color, json_lines=True, context=context)
        click.echo(rendered, nl=False)

    async def locked(api: KaizenApi, held: HeldLock) -> ApplyResult | None:
        if saved is not None:
            from kaizenctl.gitops.saved_plan import check_saved_plan

            plan, live = await check_saved_plan(api, saved)
        else:
            plan, live = await plan_with_progress(
                api, resources, options, settings.api_url, held_lock=held
            )
        await show(api, plan)
        if not plan.has_changes and not record_changes(plan, live):
            return None
        check_flags(plan, allowed)
        if not auto_approve and not click.confirm("Apply these actions?", default=False):
            raise ApplyError("apply cancelled; nothing was changed")
        total = len(plan.actions)
        finished = 0
        # Outside a terminal (CI), a heartbeat line every PROGRESS_INTERVAL_S instead.
        heartbeat = None if progress_on else Heartbeat(total)

        def on_progress(action: Action, status: str, message: str) -> None:
            nonlocal finished
            finished += 1
            if progress_on:
                click.echo(f"[{finished}/{total}] {status}: {action.summary}", err=True)
            if heartbeat is not None:
                heartbeat.finished(action)

        def on_start(action: Action) -> None:
            if heartbeat is not None:
                heartbeat.started(action)

        # CI cancels a job with SIGTERM: stop like Ctrl-C does, and still report.
        main_task = asyncio.current_task()
        assert main_task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        beating = (
            asyncio.ensure_future(heartbeat.run(lambda line: click.echo(line, err=True)))
            if heartbeat is not None
            else None
        )
        try:
            return await apply_plan_async(
                api,
                plan,
                live,
                apply_options,
                on_progress=on_progress,
                on_start=on_start,
                lock=held,
            )
        finally:
            if beating is not None:
                beating.cancel()

    result = asyncio.run(run())
    if result is None:
        return
    click.echo(render_apply(result, fmt, color=color, json_lines=True), nl=False)
    if lost:
        raise LockLostError(
            f"the lock of set {options.set_name!r} was broken while this apply held it "
            "(force-unlock, or its lease ran out): it stopped; plan again"
        )
    if result.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    if result.awaiting_approval:
        raise SystemExit(EXIT_AWAITING_APPROVAL)
    if not result.ok:
        raise SystemExit(1)


# A saved plan carries its own desired state: PATH is optional here (checked above).
for _param in command.params:
    if _param.name == "paths":
        _param.required = False
