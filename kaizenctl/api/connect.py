"""The single entry point to a server: settings in, an authenticated ``KaizenApi`` out.

This is the one place that picks the dialect (``contract_v1`` or ``studio``),
so callers never name one. ``auto`` asks the server once, before logging in:
``GET /api/v1/pipelines/patterns`` is answered without a token by the shipped
Kaizen Studio backend only (a CONTRACT.md server has no such path and wants a
token everywhere else), so its answer tells the two apart. The choice is logged
at ``-v``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import httpx

from kaizenctl.api.contract_v1 import API_PREFIX, ContractV1Api, base_url
from kaizenctl.api.errors import ApiError, ResponseFormatError
from kaizenctl.api.httplog import http_logger
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.service import KaizenApi
from kaizenctl.api.session import ApiSession, TokenState, tls_verification
from kaizenctl.api.settings import ConnectionSettings

if TYPE_CHECKING:
    # Imported where used: a contract run never loads the studio dialect (start-up time).
    from kaizenctl.api import studio

_log = http_logger()
Dialect = TypeVar("Dialect", ContractV1Api, "studio.StudioApi")


async def connect_v1(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> ContractV1Api:
    """Like ``connect``, typed as the concrete dialect (for its ``auth`` service)."""

    def open_dialect(session: ApiSession) -> ContractV1Api:
        return ContractV1Api(
            session, api_url=settings.api_url, email=settings.email, password=settings.password
        )

    return await _logged_in(settings, base_url(settings.api_url), transport, policy, open_dialect)


# Answers that mean "there is no Kaizen Studio login here" rather than "wrong password".
_NOT_A_LOGIN_STATUSES = frozenset({404, 405, 501})


def _explained(error: ApiError, api_url: str) -> ApiError:
    """``error`` with a hint at the likely cause when the login URL is not a Kaizen login."""
    if error.status not in _NOT_A_LOGIN_STATUSES and not isinstance(error, ResponseFormatError):
        return error
    path = urlsplit(api_url).path.rstrip("/")
    if path.endswith(API_PREFIX):
        base = api_url.rstrip("/")[: -len(API_PREFIX)]
        hint = f"the API URL is the server's base URL, without {API_PREFIX}: try {base}"
    else:
        hint = (
            f"{api_url} does not look like a Kaizen Studio server (it has no "
            f"{API_PREFIX}/auth/login); check --api-url / KAIZEN_API_URL"
        )
    return error.with_hint(hint)


def _session(
    settings: ConnectionSettings,
    base: str,
    transport: httpx.AsyncBaseTransport | None,
    policy: RetryPolicy | None,
) -> ApiSession:
    return ApiSession(
        base,
        parallelism=settings.parallelism,
        timeout=settings.timeout,
        verify=tls_verification(settings.ca_bundle),
        transport=transport,
        policy=policy,
        tokens=TokenState(settings.token, settings.refresh_token),
    )


async def connect_studio(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> studio.StudioApi:
    """Like ``connect``, for a shipped Kaizen Studio server, typed as that dialect."""
    from kaizenctl.api import studio

    def open_dialect(session: ApiSession) -> studio.StudioApi:
        return studio.StudioApi(
            session,
            api_url=settings.api_url,
            workspace=settings.workspace,
            email=settings.email,
            password=settings.password,
        )

    # Logs in once per run: this server allows 10 logins a minute per address.
    return await _logged_in(
        settings, studio.base_url(settings.api_url), transport, policy, open_dialect
    )


async def _logged_in(
    settings: ConnectionSettings,
    base: str,
    transport: httpx.AsyncBaseTransport | None,
    policy: RetryPolicy | None,
    open_dialect: Callable[[ApiSession], Dialect],
) -> Dialect:
    """A dialect's API over a new session to ``base``, logged in with the settings'
    credentials unless they hold a token. On any failure the session is closed; a
    login refused where there is no Kaizen login says so (``_explained``)."""
    settings.require_auth()
    session = _session(settings, base, transport, policy)
    try:
        api = open_dialect(session)
        if not settings.token:
            await api.auth.log_in_with_credentials()
    except ApiError as error:
        await session.aclose()
        raise _explained(error, settings.api_url) from None
    except BaseException:
        await session.aclose()
        raise
    return api


async def detect_dialect(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> str:
    """``contract`` or ``studio``, by one unauthenticated request."""
    from kaizenctl.api import studio
    session = _session(settings, studio.base_url(settings.api_url), transport, policy)
    try:
        found = "studio" if await studio.looks_like_studio(session) else "contract"
    finally:
        await session.aclose()
    _log.info(
        "dialect: %s (GET %s%s %s)",
        found,
        studio.API_PREFIX,
        studio.PROBE_PATH,
        "answered with its patterns" if found == "studio" else "is not a Kaizen Studio path",
    )
    return found


async def connect(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> KaizenApi:
    """Open a connection in the settings' dialect, logging in when no token was given.

    ``transport`` replaces the network (tests pass ``httpx.MockTransport``);
    ``policy`` replaces the retry timing. Close the result with ``aclose``, or
    use ``open_api``.
    """
    settings.require_auth()
    dialect = settings.dialect
    if dialect == "auto":
        dialect = await detect_dialect(settings, transport=transport, policy=policy)
    else:
        _log.info("dialect: %s (as set)", dialect)
    if dialect == "studio":
        return await connect_studio(settings, transport=transport, policy=policy)
    return await connect_v1(settings, transport=transport, policy=policy)


@asynccontextmanager
async def open_api(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> AsyncIterator[KaizenApi]:
    """``async with open_api(settings) as api:`` — connected, and closed on the way out."""
    api = await connect(settings, transport=transport, policy=policy)
    try:
        yield api
    finally:
        await api.aclose()
