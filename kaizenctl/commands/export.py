"""`kaizenctl export`: write live state as manifests, to bring hand-made resources in."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from kaizenctl.commands.options import ENVIRONMENT_HELP, connection_options


@click.command("export", epilog=ENVIRONMENT_HELP)
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    required=True,
    help="Folder to write the manifests to (one file per resource).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace the manifests of an earlier export in DIR.",
)
@connection_options
def command(out_dir: str, force: bool, **connection: Any) -> None:
    """Write every live resource as a manifest under DIR.

    References are by name; server-owned fields and server defaults are left
    out, so `kaizenctl plan DIR` right after an export shows no changes. What a
    manifest cannot express is reported as a warning that names it.
    """
    from kaizenctl.api.connect import open_api
    from kaizenctl.commands.options import settings_from_options
    from kaizenctl.gitops.export import ExportResult, export_async
    from kaizenctl.redact import redact

    settings = settings_from_options(**connection)

    async def run() -> ExportResult:
        async with open_api(settings) as api:
            return await export_async(api, out_dir, force=force)

    result = asyncio.run(run())
    for warning in result.warnings:
        click.echo(redact(f"Warning: {warning}"), err=True)
    click.echo(f"Exported {len(result.files)} resources to {out_dir}.")
    if result.by_rule:
        click.echo(
            "\nWritten by rule: the server does not record whether a deployment was deployed "
            "or promoted,\nso each is `version: latest` when it runs its pipeline's current "
            "version, else `version: N`.\nWhere one came by promotion, write `promote_from: "
            "ENV` instead (a production deployment\nleft at `version: latest` deploys every "
            "pipeline change straight to production):"
        )
        for line in result.by_rule:
            click.echo(f"  {line}")
    if result.invented_names:
        click.echo(
            "\nDeployment names made up (the server keeps none; rename them to yours "
            "before you commit):"
        )
        for line in result.invented_names:
            click.echo(f"  {line}")
