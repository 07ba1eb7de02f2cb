"""The single entry point to a server: settings in, an authenticated ``KaizenApi`` out.

This is the one place that picks the dialect (``contract_v1``), so callers
never name one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from kaizenctl.api.contract_v1 import ContractV1Api, base_url
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.service import KaizenApi
from kaizenctl.api.session import ApiSession, TokenState, tls_verification
from kaizenctl.api.settings import ConnectionSettings


async def connect_v1(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> ContractV1Api:
    """Like ``connect``, typed as the concrete dialect (for its ``auth`` service)."""
    settings.require_auth()
    session = ApiSession(
        base_url(settings.api_url),
        parallelism=settings.parallelism,
        timeout=settings.timeout,
        verify=tls_verification(settings.ca_bundle),
        transport=transport,
        policy=policy,
        tokens=TokenState(settings.token, settings.refresh_token),
    )
    api = ContractV1Api(
        session, api_url=settings.api_url, email=settings.email, password=settings.password
    )
    if not settings.token:
        try:
            await api.auth.log_in_with_credentials()
        except BaseException:
            await api.aclose()
            raise
    return api


async def connect(
    settings: ConnectionSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
) -> KaizenApi:
    """Open a connection, logging in with email and password when no token was given.

    ``transport`` replaces the network (tests pass ``httpx.MockTransport``);
    ``policy`` replaces the retry timing. Close the result with ``aclose``, or
    use ``open_api``.
    """
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
