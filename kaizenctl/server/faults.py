"""Fault and realism knobs, and the ASGI middleware that applies them.

The middleware sits outside the FastAPI app so that a faulted request (429,
503) never reaches a route: it has no side effect. A dropped answer is the
opposite: the route runs and commits, and only then is the answer cut off (or
replaced by a 503), so the client meets exactly the "did my write happen?" case
CONTRACT.md warns of.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaizenctl.server.bodies import send_detail

API_PREFIX = "/api/v1"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FaultKnobs(BaseModel):
    """Every knob, all off by default. The same names are CLI flags and admin JSON keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: float = Field(0.0, ge=0, description="Added latency per /api/v1 request.")
    rate_429: float = Field(0.0, ge=0, le=1, description="Share of requests answered 429.")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After value sent with 429/503.")
    rate_503: float = Field(0.0, ge=0, le=1, description="Share of requests answered 503.")
    rate_drop_after_commit: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Share of successful writes committed, then answered by a dropped connection "
            "(a refused write commits nothing and is answered as usual)."
        ),
    )
    rate_503_after_commit: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Share of successful writes committed, then answered 503 with Retry-After "
            "(as an overloaded proxy or server may; CONTRACT.md: a 503 may have taken effect)."
        ),
    )
    access_token_ttl_s: float = Field(3600.0, gt=0, description="Lifetime of access tokens.")
    page_size_cap: int | None = Field(None, ge=1, description="Cap on items per page.")
    deploy_step_s: float = Field(
        0.0, ge=0, description="Time a deployment spends in each of pending and deploying."
    )
    fault_seed: int | None = Field(None, description="Seed for the random faults.")
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description=(
            "Most /api/v1 requests in flight at once; past it a request is answered 429 "
            "with Retry-After, unprocessed. Default: no limit."
        ),
    )


class FaultPatch(BaseModel):
    """A partial update of the knobs (``PUT /admin/faults``)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = None
    rate_429: float | None = None
    retry_after_s: float | None = None
    rate_503: float | None = None
    rate_drop_after_commit: float | None = None
    rate_503_after_commit: float | None = None
    access_token_ttl_s: float | None = None
    page_size_cap: int | None = None
    deploy_step_s: float | None = None
    fault_seed: int | None = None
    max_in_flight: int | None = None


@dataclass(frozen=True)
class RequestLogEntry:
    method: str
    path: str
    status: int
    dropped: bool = False
    # The status the client was sent instead of ``status`` (a 503 after commit).
    replaced_with: int | None = None


class FaultState:
    """The live knobs, the random source behind them and the request log; thread-safe."""

    def __init__(self, knobs: FaultKnobs | None = None) -> None:
        self._lock = threading.Lock()
        self._knobs = knobs or FaultKnobs()
        self._rng = random.Random(self._knobs.fault_seed)
        self._log: list[RequestLogEntry] = []

    @property
    def knobs(self) -> FaultKnobs:
        with self._lock:
            return self._knobs.model_copy()

    def update(self, changes: dict[str, Any]) -> FaultKnobs:
        """Apply knob changes; a new ``fault_seed`` reseeds the random source."""
        with self._lock:
            merged = {**self._knobs.model_dump(), **changes}
            self._knobs = FaultKnobs.model_validate(merged)
            if "fault_seed" in changes:
                self._rng = random.Random(self._knobs.fault_seed)
            return self._knobs.model_copy()

    def draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def record(self, entry: RequestLogEntry) -> None:
        with self._lock:
            self._log.append(entry)

    def entries(self) -> list[RequestLogEntry]:
        with self._lock:
            return list(self._log)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()


class FaultMiddleware:
    """Applies the knobs to ``/api/v1`` requests and records them in the request log."""

    def __init__(self, app: ASGIApp, state: FaultState) -> None:
        self.app = app
        self.state = state
        # Requests between arrival and answer; one event loop runs them all.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        method = str(scope["method"])
        path = str(scope["path"])
        knobs = self.state.knobs
        if knobs.max_in_flight is not None and self.in_flight >= knobs.max_in_flight:
            # An overloaded server's answer still takes a round trip to arrive.
            if knobs.latency_ms > 0:
                await asyncio.sleep(knobs.latency_ms / 1000)
            await self._refuse(send, 429, "Too many requests in flight", knobs.retry_after_s)
            self.state.record(RequestLogEntry(method, path, 429))
            return
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send, method, path, knobs)
        finally:
            self.in_flight -= 1

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str, knobs: FaultKnobs
    ) -> None:
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000)
        # Refused requests are answered before the app sees them: no side effect.
        if knobs.rate_429 > 0 and self.state.draw() < knobs.rate_429:
            await self._refuse(send, 429, "Too many requests", knobs.retry_after_s)
            self.state.record(RequestLogEntry(method, path, 429))
            return
        if knobs.rate_503 > 0 and self.state.draw() < knobs.rate_503:
            await self._refuse(send, 503, "Service unavailable", knobs.retry_after_s)
            self.state.record(RequestLogEntry(method, path, 503))
            return
        drop = (
            method in WRITE_METHODS
            and knobs.rate_drop_after_commit > 0
            and self.state.draw() < knobs.rate_drop_after_commit
        )
        refuse_after = (
            not drop
            and method in WRITE_METHODS
            and knobs.rate_503_after_commit > 0
            and self.state.draw() < knobs.rate_503_after_commit
        )
        status = 500
        if not drop and not refuse_after:

            async def send_and_note(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_and_note)
            finally:
                self.state.record(RequestLogEntry(method, path, status))
            return
        await self._run_and_lose(
            scope, receive, send, method, path, knobs if refuse_after else None
        )

    async def _run_and_lose(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        path: str,
        refuse_with_503: FaultKnobs | None,
    ) -> None:
        # Run the route to completion (its transaction commits) and hold its answer.
        # Then either answer 503 instead, or send a head that promises more body than
        # will ever come and stop: the server closes the connection and the client sees
        # a transport error.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start is not None else 500
        if status >= 400:
            # A refused write committed nothing: there is no "after commit" to lose.
            for message in held:
                await send(message)
            self.state.record(RequestLogEntry(method, path, status))
            return
        if refuse_with_503 is not None:
            self.state.record(RequestLogEntry(method, path, status, replaced_with=503))
            await self._refuse(send, 503, "Service unavailable", refuse_with_503.retry_after_s)
            return
        self.state.record(RequestLogEntry(method, path, status, dropped=True))
        # A 204 may carry no body, so the truncated-body trick needs a status that may;
        # the client never reads the status of an answer it cannot finish anyway.
        wire_status = 200 if status == 204 else status
        await send(
            {
                "type": "http.response.start",
                "status": wire_status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        # Returning without completing the response makes uvicorn close the transport.

    @staticmethod
    async def _refuse(send: Send, status: int, message: str, retry_after_s: float) -> None:
        retry_after = (b"retry-after", _format_seconds(retry_after_s).encode())
        await send_detail(send, status, message, (retry_after,))


def _format_seconds(seconds: float) -> str:
    """``1`` for whole seconds, a plain decimal (never exponent notation) otherwise."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.6f}".rstrip("0").rstrip(".")
