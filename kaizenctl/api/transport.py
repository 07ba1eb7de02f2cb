"""The network under httpx: aiohttp's connection pool, with failures mapped by what they mean.

httpx's own transport (httpcore) spends about 2 ms of CPU per request on a
loopback benchmark, most of it in its connection-pool bookkeeping (checking
every idle socket for readability on each request); that made kaizenctl
CPU-bound long before the network was. ``AiohttpTransport`` (httpx-aiohttp)
keeps httpx's API — ``ApiSession``, the tests' ``MockTransport`` and respx
are unchanged — and runs the requests on aiohttp's C-accelerated client.

The package's own exception mapping is not safe for kaizenctl's retry rules:
it turns every ``ClientConnectionError``, including a server that closed the
connection after reading a request, into ``httpx.ConnectTimeout``, which
means "never sent" and would let a POST be sent twice. Here each aiohttp
failure becomes the httpx exception that says what may have happened on the
server: a connection that never opened is ``ConnectError`` /
``ConnectTimeout`` (safe to resend); anything after the request may have left
is a read error, a read timeout or a protocol error (maybe processed).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _as_httpx(error: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp (or socket) failure, None for anything else."""
    message = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(error, aiohttp.ClientConnectorError):
        # Includes TLS failures (ClientSSLError): the text names the certificate problem.
        return httpx.ConnectError(message)
    if isinstance(error, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError)):
        return httpx.ReadTimeout(message)
    if isinstance(error, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(message)
    if isinstance(error, (aiohttp.ClientError, OSError)):
        # A reset, a broken pipe, a payload cut short: the request may have been processed.
        return httpx.ReadError(message)
    return None


def _remapped(error: BaseException) -> BaseException:
    """Replace httpx-aiohttp's mapping of an aiohttp failure with ours."""
    cause = error.__cause__ if isinstance(error, httpx.HTTPError) else error
    if cause is None:
        return error
    return _as_httpx(cause) or error


class _MappedStream(httpx.AsyncByteStream):
    """A response body whose read failures are mapped like the request's."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as error:
            raise _remapped(error) from error

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as error:
            raise _remapped(error) from error


class KaizenTransport(AiohttpTransport):
    """``AiohttpTransport`` with kaizenctl's failure mapping and no cookie jar."""

    def __init__(self, *, verify: ssl.SSLContext | bool, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 0,
            ssl=self.ssl_context,
        )
        # The API authenticates with bearer tokens; cookies would only cost time.
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as error:
            raise _remapped(error) from error
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _MappedStream(response.stream)
        return response
