"""`kaizenctl demo`: the quick start's main job in one command.

Starts the reference server on loopback, plans and applies the example
manifests against it, then plans again to show that nothing is left to do.
"""

from __future__ import annotations

from pathlib import Path

import click

from kaizenctl.commands.common import no_color_option
from kaizenctl.commands.options import verbose_option

# Shipped inside the package, so `kaizenctl demo` works from an installed wheel too.
DEFAULT_MANIFESTS = Path(__file__).resolve().parents[1] / "examples" / "manifests"


@click.command("demo")
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@click.option(
    "--keep-running",
    is_flag=True,
    help="Keep the server up afterwards (Ctrl-C stops it) to try other commands against it.",
)
@click.option(
    "--deploy-step-s",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Seconds each deployment life-cycle step takes on the demo server.",
)
@no_color_option
@verbose_option()
def command(
    paths: tuple[str, ...], keep_running: bool, deploy_step_s: float, no_color: bool, verbose: int
) -> None:
    """Start a local reference server, apply the example manifests, and plan again.

    PATH defaults to the examples shipped with kaizenctl (kaizenctl/examples/manifests
    in a checkout). Needs the server extra: pip install 'kaizenctl[server]'.
    """
    from kaizenctl.commands.common import require_server_extra

    require_server_extra("demo")
    import asyncio
    import time

    from kaizenctl.api.connect import open_api
    from kaizenctl.api.settings import ConnectionSettings
    from kaizenctl.commands.common import use_color
    from kaizenctl.errors import ApplyError
    from kaizenctl.manifests.loader import load_manifests
    from kaizenctl.reconcile import apply_plan_async, plan_async
    from kaizenctl.render import render_apply, render_plan
    from kaizenctl.server.testing import running_server

    targets = list(paths) or [str(DEFAULT_MANIFESTS)]
    resources = list(load_manifests(targets).resources)
    from kaizenctl.api.httplog import configure_logging

    configure_logging(verbose)
    color = use_color(no_color=no_color)
    click.echo(f"Validated {len(resources)} resources in {', '.join(targets)}.\n")
    with running_server(deploy_step_s=deploy_step_s) as server:
        click.echo(f"Reference server on {server.url} (user {server.email}).\n")
        settings = ConnectionSettings(
            api_url=server.url, email=server.email, password=server.password
        )

        async def run() -> bool:
            async with open_api(settings) as api:
                click.echo("$ kaizenctl plan")
                plan, live = await plan_async(api, resources)
                click.echo(render_plan(plan, color=color))
                click.echo("$ kaizenctl apply --auto-approve")
                started = time.monotonic()
                result = await apply_plan_async(api, plan, live)
                click.echo(render_apply(result, color=color))
                click.echo(f"(applied in {time.monotonic() - started:.1f} s)\n")
                click.echo("$ kaizenctl plan   # again: live state now matches")
                again, _ = await plan_async(api, resources)
                click.echo(render_plan(again, color=color))
                return result.ok and not again.has_changes

        converged = asyncio.run(run())
        if keep_running:
            click.echo(
                # A throwaway in-memory server's generated password, shown once (issue 2).
                f"Server still running. In another shell:\n"
                f"  export KAIZEN_API_URL={server.url} KAIZEN_EMAIL={server.email}\n"
                f"  export KAIZEN_PASSWORD={server.password}\n"
                f"  {_kaizenctl_command()} plan {_shown_path(targets)}\n"
                "Ctrl-C stops it."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        if not converged:
            raise ApplyError("the demo did not converge (see above)")


def _kaizenctl_command() -> str:
    """How to run this kaizenctl from another shell: by name if that finds this one."""
    import os
    import shutil
    import sys

    here = Path(sys.executable).parent / "kaizenctl"
    found = shutil.which("kaizenctl")
    if here.exists() and (found is None or os.path.realpath(found) != os.path.realpath(here)):
        # e.g. `python3 dev.py demo --keep-running`: the tool is in .venv/bin, not on PATH.
        return os.path.relpath(here) if not os.path.relpath(here).startswith("..") else str(here)
    return "kaizenctl"


def _shown_path(targets: list[str]) -> str:
    import os

    return " ".join(
        os.path.relpath(target) if not os.path.relpath(target).startswith("..") else target
        for target in targets
    )
