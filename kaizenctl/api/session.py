"""``ApiSession``: the HTTP edge — one ``httpx.AsyncClient`` with auth, retries and limits.

Dialect-free: it knows a base URL, bearer tokens and the retry policy, but no
endpoint. A dialect (``contract_v1``) supplies paths, bodies and the
``renewer`` that turns a refused access token into a fresh one.

What it guarantees:

* at most ``parallelism`` requests in flight, and fewer while the server pushes
  back: ``AdaptiveLimit`` starts at 10 and follows AIMD (more while answers
  come, half as many on a 429 or 503); a slot is held only while a request is
  on the wire, never while backing off;
* on a 401, one renewal in flight however many requests wait on it; the
  request is then sent again, and a 401 straight after a renewal is an
  ``AuthenticationError`` telling the user to log in again;
* retries exactly as ``kaizenctl.api.retry`` says;
* every httpx exception mapped to ``kaizenctl.api.errors`` here, at the edge;
* ``-v`` logging of method, path, status and duration, never of headers or bodies.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from kaizenctl import __version__
from kaizenctl.api.concurrency import AdaptiveLimit, Outcome
from kaizenctl.api.errors import (
    LOGIN_AGAIN_HINT,
    ApiError,
    AuthenticationError,
    OutcomeUnknownError,
    ResponseFormatError,
    TransportError,
    error_for_status,
)
from kaizenctl.api.httplog import http_logger
from kaizenctl.api.retry import IDEMPOTENT_METHODS, Disposition, RetryPolicy, classify_status
from kaizenctl.api.retry import parse_retry_after as _parse_retry_after
from kaizenctl.api.settings import DEFAULT_PARALLELISM
from kaizenctl.api.transport import KaizenTransport
from kaizenctl.redact import register_secret

Renewer = Callable[[], Awaitable[None]]
# Reads a failed answer's JSON body into the ``detail`` of kaizenctl.api.errors.
ErrorReader = Callable[[Any], Any]


def contract_error_detail(body: Any) -> Any:
    """CONTRACT.md's error body: ``{"detail": "text" | [{loc, msg, type}]}``."""
    return body.get("detail") if isinstance(body, dict) else None


# 401s one request may meet before giving up: each renewal by another request allows one more.
MAX_REFUSALS = 4
# Answers that mean "too many requests at once": the adaptive limit halves on them.
PUSH_BACK_STATUSES = frozenset({429, 503})
QueryParams = Mapping[str, str | int | float | bool]

_log = http_logger()


class TokenState:
    """The current bearer tokens; every value set here is registered as a secret."""

    def __init__(self, access_token: str | None = None, refresh_token: str | None = None) -> None:
        self._access: str | None = None
        self._refresh: str | None = None
        self.access_token = access_token
        self.refresh_token = refresh_token

    @property
    def access_token(self) -> str | None:
        return self._access

    @access_token.setter
    def access_token(self, value: str | None) -> None:
        register_secret(value)
        self._access = value

    @property
    def refresh_token(self) -> str | None:
        return self._refresh

    @refresh_token.setter
    def refresh_token(self, value: str | None) -> None:
        register_secret(value)
        self._refresh = value

    def __repr__(self) -> str:
        return "TokenState(...)"


def tls_verification(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """Verification always on; a private CA is added, never a switch to turn checks off."""
    if ca_bundle is None:
        return True
    return ssl.create_default_context(cafile=ca_bundle)


ConnectFailure = Literal["refused", "unresolved", "resolver-busy", "not-tls", "tls", "other"]


def _connect_failure(exc: httpx.TransportError) -> ConnectFailure | None:
    """Why a connection did not open, read from the exception chain; None if it did open."""
    if not isinstance(exc, httpx.ConnectError):
        return None
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(error) for error in seen)
    for error in seen:
        if isinstance(error, socket.gaierror):
            # EAI_AGAIN is the resolver's "try again"; any other answer is final.
            return "resolver-busy" if error.errno == socket.EAI_AGAIN else "unresolved"
    # The server answered a TLS hello with plain HTTP: it speaks no TLS on that port.
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "HTTP_REQUEST" in text:
        return "not-tls"
    if _is_tls_failure(exc) or any(isinstance(error, ssl.SSLError) for error in seen):
        return "tls"
    if any(isinstance(error, ConnectionRefusedError) for error in seen):
        return "refused"
    return "other"


def _transport_disposition(exc: httpx.TransportError) -> Disposition:
    if _connect_failure(exc) in ("tls", "not-tls", "unresolved"):
        # Sending again cannot change a certificate, a protocol or a DNS answer.
        return Disposition.DONE
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        # The request never left: nothing can have happened on the server.
        return Disposition.RESEND
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)):
        return Disposition.DONE
    # Read/write errors, read timeouts, a connection reset or closed mid-answer:
    # the server may have acted on the request.
    return Disposition.MAYBE_DONE


def _is_tls_failure(exc: BaseException) -> bool:
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text or "certificate" in text.lower()


def _describe_transport_error(exc: httpx.TransportError, base_url: str) -> tuple[str, str]:
    """(detail, hint) for a transport failure, without the request's headers."""
    name = type(exc).__name__
    text = str(exc) or name
    parts = urlsplit(base_url)
    where = parts.netloc.rpartition("@")[2] or base_url
    failure = _connect_failure(exc)
    if failure == "refused":
        return (
            f"connection refused: nothing listens at {where}",
            "is the server running, and are the host and port in --api-url / KAIZEN_API_URL right?",
        )
    if failure in ("unresolved", "resolver-busy"):
        return (
            f"cannot resolve the host name {parts.hostname or where}",
            "check the host in --api-url / KAIZEN_API_URL",
        )
    if failure == "not-tls":
        plain = urlunsplit(("http", parts.netloc, "", "", ""))
        return (
            f"{where} does not speak TLS: it answered the https handshake in plain text",
            f"the server serves plain http there; if that is intended, use {plain} "
            "(plain http is allowed to localhost only, unless --insecure)",
        )
    if failure == "tls":
        return (
            f"TLS verification failed: {text}",
            "pass --ca-bundle with your private CA's certificate",
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({name})", "raise --timeout if the server is slow"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {text}", "check --api-url / KAIZEN_API_URL"
    return f"connection failed: {text} ({name})", ""


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing. Both APIs authenticate with bearer tokens, and
    reading each answer's headers into the standard library's cookie jar cost ~60 µs a
    request. Like Go's ``http.Client`` without a jar (what Terraform and Argo CD use)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _CookielessClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` that never keeps or sends a cookie."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass


class ApiSession:
    """An async HTTP session for one server; create it in the event loop that will use it."""

    def __init__(
        self,
        base_url: str,
        *,
        parallelism: int = DEFAULT_PARALLELISM,
        timeout: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        tokens: TokenState | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self.policy = policy or RetryPolicy()
        self.tokens = tokens or TokenState()
        self.renewer: Renewer | None = None
        self.concurrency = AdaptiveLimit(parallelism)
        # A dialect whose error bodies differ from the contract's replaces this.
        self.error_detail: ErrorReader = contract_error_detail
        self._renew_lock = asyncio.Lock()
        # The token whose renewal failed, and why: waiters re-raise instead of trying again.
        self._renew_failure: tuple[str | None, ApiError] | None = None
        self.renewals = 0
        limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
        if transport is None:
            if verify is True and urlsplit(self.base_url).scheme == "http":
                # Plain http never does TLS (and redirects are off): spare loading the CA
                # store (~40 ms). A context with no roots still verifies, so it can only refuse.
                verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            transport = KaizenTransport(verify=verify, limits=limits)
        self._client = _CookielessClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=limits,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": f"kaizenctl/{__version__}"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def full_path(self, path: str) -> str:
        return f"{self._base_path}{path}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        authenticated: bool = True,
        idempotent: bool | None = None,
        missing_ok_on_retry: bool = False,
    ) -> httpx.Response:
        """Send one logical request, retrying per the policy; return its 2xx answer.

        ``idempotent`` defaults by method. A non-idempotent request whose
        answer was lost raises ``OutcomeUnknownError`` rather than being sent
        again. ``missing_ok_on_retry`` (DELETE) accepts a 404 that follows an
        attempt that may have succeeded.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        shown_path = self.full_path(path)
        budget = self.policy.begin()
        just_renewed = False
        refusals = 0
        maybe_done_before = False
        while True:
            token: str | None = None
            if authenticated:
                if self.tokens.access_token is None:
                    await self._renew(None, method, shown_path)
                token = self.tokens.access_token
            try:
                response = await self._send_once(method, path, params, json, data, token)
            except httpx.TransportError as exc:
                just_renewed = False
                disposition = _transport_disposition(exc)
                detail, hint = _describe_transport_error(exc, self.base_url)
                if disposition is Disposition.MAYBE_DONE and not idempotent:
                    raise OutcomeUnknownError(
                        method, shown_path, None, f"{detail}; the request may have taken effect"
                    ) from None
                delay = None if disposition is Disposition.DONE else budget.next_delay()
                if (
                    delay is not None
                    and _connect_failure(exc) in ("refused", "resolver-busy")
                    and budget.elapsed() + delay > self.policy.refused_budget
                ):
                    # A server that restarts comes back within moments; one that is not
                    # there should fail now, not after the whole retry budget.
                    delay = None
                if delay is None:
                    raise TransportError(method, shown_path, None, detail, hint=hint) from None
                maybe_done_before = maybe_done_before or disposition is Disposition.MAYBE_DONE
                _log.info("%s %s: %s; retrying in %.2fs", method, shown_path, detail, delay)
                await budget.wait(delay)
                refusals = 0
                continue
            except httpx.HTTPError as exc:
                raise TransportError(method, shown_path, None, str(exc)) from None

            status = response.status_code
            if status == 401 and authenticated:
                refusals += 1
                if just_renewed or self.renewer is None or refusals > MAX_REFUSALS:
                    raise self._error(method, shown_path, response, hint=LOGIN_AGAIN_HINT)
                # Only a renewal this request made itself makes the next 401 final: a token
                # another request renewed may have expired again before this one used it.
                just_renewed = await self._renew(token, method, shown_path)
                continue
            just_renewed = False
            if status < 400:
                return response
            if status == 404 and missing_ok_on_retry and maybe_done_before:
                # The earlier attempt did what we asked; its answer was lost.
                return response
            disposition = classify_status(status)
            retry_after = None
            if status in (429, 503):
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            if disposition is Disposition.MAYBE_DONE and not idempotent:
                raise OutcomeUnknownError(
                    method,
                    shown_path,
                    status,
                    f"{response.reason_phrase}; the request may have taken effect",
                    retry_after=retry_after,
                )
            if disposition is not Disposition.DONE:
                delay = budget.next_delay(retry_after, server_paced=status == 429)
                if delay is not None:
                    maybe_done_before = maybe_done_before or disposition is Disposition.MAYBE_DONE
                    _log.info("%s %s: %d; retrying in %.2fs", method, shown_path, status, delay)
                    await budget.wait(delay)
                    # A token may expire during a wait: a 401 after it is a new refusal,
                    # not the same one again.
                    refusals = 0
                    continue
            raise self._error(method, shown_path, response)

    async def _send_once(
        self,
        method: str,
        path: str,
        params: QueryParams | None,
        json: Any,
        data: Mapping[str, str] | None,
        token: str | None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        shown_path = self.full_path(path)
        window = await self.concurrency.acquire()
        outcome = Outcome.FAILED
        started = time.perf_counter()
        try:
            response = await self._client.request(
                method,
                path,
                params=dict(params) if params else None,
                json=json,
                data=data,
                headers=headers,
            )
            outcome = (
                Outcome.PUSHED_BACK
                if response.status_code in PUSH_BACK_STATUSES
                else Outcome.ANSWERED
            )
        except httpx.HTTPError as exc:
            elapsed_ms = (time.perf_counter() - started) * 1000
            _log.info(
                "%s %s failed after %.0f ms (%s)",
                method,
                shown_path,
                elapsed_ms,
                type(exc).__name__,
            )
            raise
        finally:
            self.concurrency.release(window, outcome)
        elapsed_ms = (time.perf_counter() - started) * 1000
        _log.info("%s %s %d %.0f ms", method, shown_path, response.status_code, elapsed_ms)
        if params:
            _log.debug("  query: %s", "&".join(f"{k}={v}" for k, v in params.items()))
        return response

    async def _renew(self, used_token: str | None, method: str, shown_path: str) -> bool:
        """Renew the access token once for everyone who saw ``used_token`` refused.

        True when this call renewed it; False when another request already had.
        """
        if self.renewer is None:
            raise AuthenticationError(
                method, shown_path, None, "no access token", hint=LOGIN_AGAIN_HINT
            )
        async with self._renew_lock:
            if self.tokens.access_token != used_token:
                return False  # another request renewed it while this one waited
            failure = self._renew_failure
            if failure is not None and failure[0] == used_token:
                raise failure[1]
            _log.info("access token refused or missing; renewing it")
            try:
                await self.renewer()
            except ApiError as exc:
                self._renew_failure = (used_token, exc)
                raise
            self.renewals += 1
            return True

    def _error(
        self, method: str, shown_path: str, response: httpx.Response, *, hint: str = ""
    ) -> ApiError:
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = self.error_detail(body)
        return error_for_status(
            method,
            shown_path,
            response.status_code,
            detail,
            reason=response.reason_phrase,
            hint=hint,
        )

    def decode(self, response: httpx.Response) -> Any:
        """The JSON body of an answer, or ``ResponseFormatError``."""
        try:
            return response.json()
        except ValueError:
            raise ResponseFormatError.of(response, "the answer is not JSON") from None
