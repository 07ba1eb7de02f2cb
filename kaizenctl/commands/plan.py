"""`kaizenctl plan`: show what apply would change."""

from __future__ import annotations

import asyncio
import shlex
from typing import Any

import click

from kaizenctl.commands.common import plan_options
from kaizenctl.commands.options import ENVIRONMENT_HELP, connection_options

EXIT_CHANGES = 2


@click.command("plan", epilog=ENVIRONMENT_HELP)
@plan_options
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 with no changes, 2 with changes, 1 on error (as Terraform does).",
)
@click.option(
    "--out",
    "out_file",
    metavar="FILE",
    default=None,
    help="Save the plan for `kaizenctl apply --plan FILE`.",
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
    detailed_exitcode: bool,
    out_file: str | None,
    **connection: Any,
) -> None:
    """Show what `apply` would change, without changing anything.

    PATH is a manifest file, a folder (read recursively) or - for standard input.
    """
    from kaizenctl.api.connect import open_api
    from kaizenctl.commands.common import (
        build_plan_options,
        load_resources,
        plan_context,
        plan_with_progress,
        use_color,
    )
    from kaizenctl.commands.options import settings_from_options
    from kaizenctl.reconcile import Plan
    from kaizenctl.render import PlanContext, render_plan

    resources = load_resources(paths)
    options = build_plan_options(
        prune=prune,
        prune_unmanaged=prune_unmanaged,
        set_name=set_name,
        targets=targets,
        allow_delete_all=allow_delete_all,
    )
    if out_file is not None:
        from kaizenctl.gitops.saved_plan import check_plan_destination

        check_plan_destination(out_file)
    settings = settings_from_options(**connection)

    async def run() -> tuple[Plan, PlanContext | None]:
        async with open_api(settings) as api:
            plan, live = await plan_with_progress(api, resources, options, settings.api_url)
            if out_file is not None:
                from kaizenctl.gitops.saved_plan import save_plan

                await save_plan(api, out_file, plan, live, resources)
            context = await plan_context(api) if output_format == "markdown" else None
            return plan, context

    plan, context = asyncio.run(run())
    color = use_color(no_color=no_color)
    rendered = render_plan(plan, output_format, color=color, context=context)  # type: ignore[arg-type]
    click.echo(rendered, nl=False)
    if out_file is not None:
        # As Terraform does: say how to apply exactly what was just reviewed. JSON and
        # Markdown keep stdout to themselves, so the hint goes to stderr there.
        click.echo(
            f"\nSaved the plan to {out_file}. To apply exactly these actions, run:\n"
            f"  kaizenctl apply --plan {shlex.quote(out_file)}",
            err=output_format != "text",
        )
    if detailed_exitcode and plan.has_changes:
        raise SystemExit(EXIT_CHANGES)
