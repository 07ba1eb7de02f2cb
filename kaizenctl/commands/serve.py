"""``kaizenctl serve``: run the reference Kaizen Studio server.

FastAPI and uvicorn are imported inside the command so that ``kaizenctl --help``
and the other commands never pay for them.
"""

from __future__ import annotations

import ipaddress
import os

import click

from kaizenctl.commands.options import verbose_option

DEFAULT_EMAIL = "dev@kaizen.local"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(name="serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help=(
        "Address to bind. A non-loopback address needs an explicit password (see --password-env)."
    ),
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=(
        "SQLite file to keep state in, so it survives a restart. Without it, state lives in memory."
    ),
)
@click.option(
    "--email",
    default=DEFAULT_EMAIL,
    show_default=True,
    help="Email of the development user ensured at start.",
)
@click.option(
    "--password-env",
    default="KAIZEN_SERVE_PASSWORD",
    show_default=True,
    help=(
        "Environment variable holding the development user's password. If unset, a "
        "password is generated and printed once."
    ),
)
@click.option(
    "--admin/--no-admin",
    default=False,
    show_default=True,
    help=(
        "Mount the admin endpoint (/admin/faults, /admin/requests) to change fault knobs "
        "and read the request log at run time."
    ),
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Latency added to every /api/v1 request, in milliseconds.",
)
@click.option(
    "--rate-429",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help=("Share of /api/v1 requests answered 429 (with Retry-After) before they are processed."),
)
@click.option(
    "--retry-after-s",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help=("Retry-After value, in seconds (fractions allowed), sent with 429 and 503."),
)
@click.option(
    "--rate-503",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of /api/v1 requests answered 503 before they are processed.",
)
@click.option(
    "--rate-drop-after-commit",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help=(
        "Share of successful writes (POST/PUT/PATCH/DELETE) that are committed and then "
        "answered by a dropped connection."
    ),
)
@click.option(
    "--rate-503-after-commit",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help=(
        "Share of successful writes that are committed and then answered 503 (with "
        "Retry-After): the client cannot tell the write happened."
    ),
)
@click.option(
    "--access-token-ttl-s",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Lifetime of access tokens, in seconds.",
)
@click.option(
    "--page-size-cap",
    type=click.IntRange(min=1),
    default=None,
    help=("Cap on items per list page, below the page_size asked for. Default: no cap."),
)
@click.option(
    "--deploy-step-s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help=(
        "Seconds a deployment spends in each of pending and deploying. With 0 a new "
        "deployment answers pending and is settled at the next read. Deployments of a "
        "pipeline whose config has simulate_deploy_failure: true end failed."
    ),
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Most /api/v1 requests in flight at once; past it requests are answered 429 with "
        "Retry-After, unprocessed. Default: no limit."
    ),
)
@click.option(
    "--fault-seed",
    type=int,
    default=None,
    help="Seed for the random faults, for reproducible runs.",
)
@verbose_option("-v logs kaizenctl's own messages, -vv with detail (uvicorn's: --log-level).")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="uvicorn log level.",
)
def command(
    host: str,
    port: int,
    db_path: str | None,
    email: str,
    password_env: str,
    admin: bool,
    log_level: str,
    verbose: int,
    **knobs: object,
) -> None:
    """Run the reference Kaizen Studio server (the API kaizenctl speaks).

    On start it ensures a development organization and user and prints how to
    connect. The fault knobs are all off by default; with --admin they can also
    be changed at run time with PUT /admin/faults (JSON keys as the flag names,
    with underscores), and GET /admin/requests returns the request log.
    """
    from kaizenctl.api.httplog import configure_logging
    from kaizenctl.commands.common import require_server_extra

    require_server_extra("serve")
    configure_logging(verbose)
    password = os.environ.get(password_env) or None
    if not _is_loopback(host) and password is None:
        raise click.UsageError(
            f"refusing to bind non-loopback address {host!r} without an explicit password: "
            f"set {password_env}"
        )
    import uvicorn

    from kaizenctl.server.app import ServerState, build_asgi, ensure_dev_user
    from kaizenctl.server.db import Database
    from kaizenctl.server.faults import FaultKnobs, FaultState
    from kaizenctl.server.listen import bind

    # Bind first: a busy port must fail before a password is generated and printed.
    try:
        sock = bind(host, port)
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
    port = sock.getsockname()[1]
    try:
        state = ServerState(
            db=Database(db_path), faults=FaultState(FaultKnobs.model_validate(knobs))
        )
    except BaseException:
        sock.close()
        raise
    generated = ensure_dev_user(state, email, password)
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(
        f"Kaizen Studio reference server at http://{shown_host}:{port}  (API: /api/v1, docs: /docs)"
    )
    click.echo(f"  email:    {email}")
    if generated is not None:
        click.echo(f"  password: {generated}  (generated; shown only this once)")
    elif password is not None:
        click.echo(f"  password: from ${password_env}")
    else:
        click.echo(
            f"  password: unchanged (stored in the database; set ${password_env} to reset it)"
        )
    click.echo(f"  state:    {db_path if db_path else 'in memory (lost on exit)'}")
    if admin:
        click.echo("  admin:    /admin/faults, /admin/requests")
    config = uvicorn.Config(build_asgi(state, admin=admin), log_level=log_level, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        state.db.close()
