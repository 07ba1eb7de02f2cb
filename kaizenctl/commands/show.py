"""`kaizenctl show PLANFILE`: render a saved plan without contacting a server."""

from __future__ import annotations

import click


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
def command(plan_file: str, output_format: str) -> None:
    """Render a saved plan (from `plan --out PLANFILE`) as text, JSON or Markdown.

    No server is contacted and no credentials are needed, so one saved plan can
    give both the pull-request comment and the artifact that `apply --plan`
    executes. Sensitive values stay masked, as they are in the file.
    """
    from kaizenctl.commands.common import use_color
    from kaizenctl.gitops.saved_plan import read_saved_plan
    from kaizenctl.reconcile import Plan
    from kaizenctl.render import render_plan

    saved = read_saved_plan(plan_file, label=plan_file)
    plan = Plan.model_validate(saved.plan)
    click.echo(render_plan(plan, output_format, color=use_color()), nl=False)  # type: ignore[arg-type]
