"""`kaizenctl show PLANFILE`: render a saved plan without contacting a server."""

from __future__ import annotations

import click

from kaizenctl.commands.common import no_color_option
from kaizenctl.commands.options import verbose_option


@click.command("show")
@click.argument("plan_file", metavar="PLANFILE")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="Output format, the same renderer as `plan` (Markdown suits a PR comment).",
)
@no_color_option
@verbose_option("-v also says, on stderr, where and when the plan was made.")
def command(plan_file: str, output_format: str, no_color: bool, verbose: int) -> None:
    """Render a saved plan (from `plan --out PLANFILE`) as text, JSON or Markdown.

    No server is contacted and no credentials are needed, so one saved plan can
    give both the pull-request comment and the artifact that `apply --plan`
    executes. The output is what `plan` printed when it saved the file.
    Sensitive values stay masked, as they are in the file.
    """
    from kaizenctl.commands.common import use_color
    from kaizenctl.gitops.saved_plan import read_saved_plan, shown_plan
    from kaizenctl.render import PlanContext, render_plan

    saved = read_saved_plan(plan_file, label=plan_file)
    plan = shown_plan(saved, label=plan_file)
    if verbose:
        click.echo(
            f"Saved plan made {saved.created_at} by kaizenctl {saved.kaizenctl_version} "
            f"for {saved.server} (organization {saved.organization_id}).",
            err=True,
        )
    # The same head `plan --format markdown` writes: where the plan was made.
    context = PlanContext(server=saved.server, organization=saved.organization_id)
    color = use_color(no_color=no_color)
    text = render_plan(plan, output_format, color=color, context=context)  # type: ignore[arg-type]
    click.echo(text, nl=False)
