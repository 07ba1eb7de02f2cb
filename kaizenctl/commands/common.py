"""Pieces shared by plan and apply: manifest paths, plan flags, output choice.

Light imports only (click): the heavy modules load inside the command bodies.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from kaizenctl.api.service import KaizenApi
    from kaizenctl.manifests.models import Resource
    from kaizenctl.ownership.lock import HeldLock
    from kaizenctl.reconcile import LiveSnapshot, Plan
    from kaizenctl.reconcile.diff import PlanOptions
    from kaizenctl.render import PlanContext

F = TypeVar("F", bound=Callable[..., Any])


def set_option(command: F) -> F:
    """--set NAME: the manifest set whose ownership record and lock a command uses."""
    return click.option(
        "--set",
        "set_name",
        metavar="NAME",
        default=None,
        help="The manifest set: what it owns is what --prune may delete, and one apply at a "
        "time holds its lock [env: KAIZEN_SET; default: default].",
    )(command)


def resolve_set_name(given: str | None) -> str:
    from kaizenctl.ownership.inventory import DEFAULT_SET, check_set_name

    return check_set_name(given or os.environ.get("KAIZEN_SET") or DEFAULT_SET)


def plan_options(command: F) -> F:
    """PATH..., --set, --prune, --prune-unmanaged, --target and --allow-delete-all."""
    decorators = [
        click.argument("paths", nargs=-1, required=True, metavar="PATH..."),
        set_option,
        click.option(
            "--prune",
            is_flag=True,
            help="Delete what this set owns and no longer declares (shown first in the plan).",
        ),
        click.option(
            "--prune-unmanaged",
            is_flag=True,
            help="Also delete what no set owns (made by hand): for an organization whose "
            "whole truth is this set. Never what another set owns.",
        ),
        click.option(
            "--target",
            "targets",
            multiple=True,
            metavar="KIND/NAME",
            help="Limit the plan to this resource and what it depends on; repeatable.",
        ),
        click.option(
            "--allow-delete-all",
            is_flag=True,
            help="Confirm a plan that deletes every live resource of a kind.",
        ),
        click.option(
            "--format",
            "output_format",
            type=click.Choice(["text", "json", "markdown"]),
            default="text",
            show_default=True,
            help="Output format; JSON is versioned (format_version), Markdown suits PR comments.",
        ),
        no_color_option,
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


no_color_option = click.option(
    "--no-color", is_flag=True, help="No colour, even on a terminal (as NO_COLOR=1 does)."
)


def load_resources(paths: tuple[str, ...]) -> list[Resource]:
    from kaizenctl.manifests.loader import load_manifests

    return list(load_manifests(list(paths), stdin=sys.stdin).resources)


def build_plan_options(
    *,
    prune: bool,
    targets: tuple[str, ...],
    allow_delete_all: bool,
    prune_unmanaged: bool = False,
    set_name: str | None = None,
) -> PlanOptions:
    from kaizenctl.errors import UsageError
    from kaizenctl.kinds import KIND_NAMES
    from kaizenctl.reconcile.diff import PlanOptions

    for target in targets:
        kind, _, name = target.partition("/")
        if kind not in KIND_NAMES or not name:
            raise UsageError(
                f"--target {target!r}: expected KIND/NAME with KIND one of {', '.join(KIND_NAMES)}"
            )
    return PlanOptions(
        prune=prune,
        prune_unmanaged=prune_unmanaged,
        set_name=resolve_set_name(set_name),
        targets=frozenset(targets),
        allow_delete_all=allow_delete_all,
    )


# The reference server's imports, and the distribution each comes from.
SERVER_MODULES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "multipart": "python-multipart",
    "jwt": "PyJWT",
}


def require_server_extra(command: str) -> None:
    """Stop with a clear message when the reference server's packages are not installed.

    ``pip install kaizenctl`` is the client alone; ``kaizenctl[server]`` adds these.
    """
    from importlib.util import find_spec

    from kaizenctl.errors import UsageError

    # find_spec looks without importing (fast, and no import-time warnings).
    missing = [dist for module, dist in SERVER_MODULES.items() if find_spec(module) is None]
    if missing:
        raise UsageError(
            f"`kaizenctl {command}` runs the reference server, whose packages are not "
            f"installed (missing: {', '.join(missing)}). Install them with: "
            "pip install 'kaizenctl[server]'"
        )


def use_color(stream: Any = None, *, no_color: bool = False) -> bool:
    """Colour only on a terminal, never with --no-color or a non-empty NO_COLOR.

    no-color.org: NO_COLOR "when present and not an empty string"; an empty one is unset.
    """
    stream = stream or sys.stdout
    if no_color or os.environ.get("NO_COLOR", ""):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(message: str) -> None:
    """A status line for a person watching a terminal; silent in CI logs and pipes."""
    if sys.stderr.isatty():
        click.echo(message, err=True)


async def plan_with_progress(
    api: KaizenApi,
    resources: list[Resource],
    options: PlanOptions,
    api_url: str,
    held_lock: HeldLock | None = None,
) -> tuple[Plan, LiveSnapshot]:
    """``plan_async``, telling a person at a terminal what is being read."""
    from kaizenctl.kinds import named_kinds
    from kaizenctl.reconcile import plan_async

    progress(f"Reading live state from {api_url} …")
    plan, live = await plan_async(api, resources, options, held_lock=held_lock)
    counts = [f"{len(live.of_kind(info.kind))} {info.plural}" for info in named_kinds()]
    progress(f"Read {', '.join(counts)}, {len(live.deployments)} deployments.")
    return plan, live


async def plan_context(api: KaizenApi) -> PlanContext:
    """The server and organization a plan is made against, for the Markdown comment's head."""
    from kaizenctl.gitops.saved_plan import server_identity
    from kaizenctl.render import PlanContext

    user = await api.current_user()
    return PlanContext(server=server_identity(api), organization=user.organization_id)
