"""Connection flags shared by every command that talks to a server.

    @click.command()
    @connection_options
    def command(**options): settings = settings_from_options(**options)

Only click and the standard library are imported here (no httpx), so that
``kaizenctl --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from kaizenctl.api.settings import ConnectionSettings

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PARALLELISM = 64
DEFAULT_TIMEOUT = 30.0

# Every environment variable kaizenctl reads, for --help (a test checks it against the source).
ENVIRONMENT_HELP = """Environment variables:

\b
  KAIZEN_API_URL         server base URL, e.g. https://kaizen.example.com (--api-url wins)
  KAIZEN_TOKEN           access token, instead of email and password
  KAIZEN_REFRESH_TOKEN   refresh token, used when the access token expires
  KAIZEN_EMAIL           login email, with KAIZEN_PASSWORD
  KAIZEN_PASSWORD        login password
  KAIZEN_DIALECT         contract, studio or auto (the default): the API the server speaks
  KAIZEN_WORKSPACE       studio dialect: the workspace managed, by name (--workspace wins)
  KAIZEN_SERVE_PASSWORD  serve: the development user's password (see --password-env)
  KAIZEN_SET             the manifest set (--set wins; default: default)
  NO_COLOR               any non-empty value turns colour off, as --no-color does
  ${VAR} in manifests    each variable a manifest names (secrets; never printed)
"""

CONNECTION_OPTION_NAMES = (
    "api_url",
    "insecure",
    "ca_bundle",
    "parallelism",
    "timeout",
    "verbose",
    "dialect",
    "workspace",
)


def connection_options(command: F) -> F:
    """Add --api-url, --insecure, --ca-bundle, --parallelism, --timeout and -v to a command."""
    decorators = [
        click.option(
            "--api-url",
            metavar="URL",
            default=None,
            help="Server base URL, e.g. https://kaizen.example.com [env: KAIZEN_API_URL].",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            default=False,
            help="Allow plain http to a host other than localhost (tokens travel unencrypted).",
        ),
        click.option(
            "--ca-bundle",
            metavar="FILE",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="PEM file of a private CA to trust (TLS verification stays on).",
        ),
        click.option(
            "--parallelism",
            type=click.IntRange(min=1),
            default=DEFAULT_PARALLELISM,
            show_default=True,
            help=(
                "Most requests in flight at once. kaizenctl starts at 10 and adapts: more "
                "while answers come, half as many when the server answers 429 or 503."
            ),
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds to wait for each HTTP answer.",
        ),
        click.option(
            "--dialect",
            type=click.Choice(["contract", "studio", "auto"]),
            default=None,
            help="The API the server speaks: CONTRACT.md, the shipped Kaizen Studio backend, "
            "or auto (one request tells them apart) [env: KAIZEN_DIALECT; default: auto].",
        ),
        click.option(
            "--workspace",
            metavar="NAME",
            default=None,
            help="Studio dialect: the workspace to manage, by name; apply creates it when "
            "missing [env: KAIZEN_WORKSPACE].",
        ),
        verbose_option(),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def verbose_option(
    help_text: str = "-v logs each request (method, path, status, duration); -vv adds detail.",
) -> Callable[[F], F]:
    """-v / -vv, accepted by every command (each says what it adds)."""
    return click.option("-v", "--verbose", count=True, help=help_text)


def settings_from_options(
    *,
    api_url: str | None = None,
    insecure: bool = False,
    ca_bundle: str | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    timeout: float = DEFAULT_TIMEOUT,
    verbose: int = 0,
    dialect: str | None = None,
    workspace: str | None = None,
    require_auth: bool = True,
    **_other_options: Any,
) -> ConnectionSettings:
    """Connection settings from the flags above plus the environment; applies -v too.

    Other keyword arguments (a command's own options) are ignored, so a command
    may pass all of its options through.
    """
    from kaizenctl.api.httplog import configure_logging
    from kaizenctl.api.settings import settings_from_env

    configure_logging(verbose)
    return settings_from_env(
        api_url=api_url,
        insecure=insecure,
        ca_bundle=ca_bundle,
        parallelism=parallelism,
        timeout=timeout,
        dialect=dialect,
        workspace=workspace,
        require_auth=require_auth,
    )
