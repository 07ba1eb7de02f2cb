"""Request bodies the reference server refuses before any route sees them.

* **Too large**: a body over ``MAX_BODY_BYTES`` answers 413, whether it says so in
  ``Content-Length`` or is streamed. Nothing in the contract needs more: the
  largest real request, a pipeline graph of hundreds of nodes, is tens of KiB.
* **Not valid JSON numbers**: Python's ``json`` accepts ``NaN``, ``Infinity`` and
  ``1e999`` (read as infinity), none of which JSON allows. Left to the routes,
  the 422 that quotes such a value cannot itself be rendered and the client got
  a 500; here it is a plain 422 in FastAPI's validation shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 2 * 1024 * 1024


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJsonNumber(f"{text} is out of range for a number")
    return value


def non_json_number(body: bytes) -> str | None:
    """Why ``body`` holds a number JSON does not allow; None if it holds none (or is not JSON)."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotJsonNumber as problem:
        return str(problem)
    except ValueError:
        return None  # not JSON at all: the route's own validation says so
    return None


class BodyGuard:
    """ASGI middleware: 413 for oversized bodies, 422 for NaN/Infinity/overflowing numbers."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._answer(send, 413, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._answer(send, 413, self._too_large())
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if b"json" in headers.get(b"content-type", b"") and body:
            problem = non_json_number(body)
            if problem is not None:
                detail = [{"loc": ["body"], "msg": problem, "type": "json_invalid"}]
                await self._answer(send, 422, detail)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later messages: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes // (1024 * 1024)} MiB"

    @staticmethod
    async def _answer(send: Send, status: int, detail: Any) -> None:
        await send_detail(send, status, detail)


async def send_detail(
    send: Send, status: int, detail: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer ``{"detail": detail}`` from ASGI middleware, before the app sees the request."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
