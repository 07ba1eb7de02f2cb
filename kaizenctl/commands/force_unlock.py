"""`kaizenctl force-unlock`: break a set lock left by an apply that died (Terraform's)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from kaizenctl.commands.common import set_option
from kaizenctl.commands.options import connection_options


@click.command("force-unlock")
@click.argument("lock_id", metavar="LOCK_ID")
@set_option
@connection_options
def command(lock_id: str, set_name: str | None, **connection: Any) -> None:
    """Remove the lock of a manifest set, if its id is LOCK_ID.

    Only for a lock whose apply is known to be dead (a killed CI job, say): a
    lock also runs out by itself when its lease ends. The id is the one the
    refused apply printed, so a lock that changed hands meanwhile is never broken.
    The apply that held it, if it still runs, stops at its next lease renewal.
    """
    from kaizenctl.api.connect import open_api
    from kaizenctl.commands.common import resolve_set_name
    from kaizenctl.commands.options import settings_from_options
    from kaizenctl.ownership.lock import LockClaim, force_unlock

    name = resolve_set_name(set_name)
    settings = settings_from_options(**connection)

    async def run() -> LockClaim:
        async with open_api(settings) as api:
            return await force_unlock(api.records, name, lock_id)

    claim = asyncio.run(run())
    click.echo(f"Unlocked set {name!r}: removed the lock of {claim.describe()}.")
