"""Recorded exchanges with the shipped server, answered again: ``httpx.MockTransport``.

Each fixture (``tests/studio/fixtures/<name>.json``, recorded against a live
instance; tokens and passwords redacted) holds one request and its answer. A
``Replay`` answers a request with the first unused fixture of the same method and
path, and records what the client sent, so a test can check both directions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


class Replay:
    def __init__(self, *names: str, answers: list[dict[str, Any]] | None = None) -> None:
        self.exchanges = [fixture(name) for name in names] + list(answers or [])
        self.sent: list[httpx.Request] = []

    def add(self, exchange: dict[str, Any]) -> None:
        self.exchanges.append(exchange)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        for exchange in self.exchanges:
            path = exchange["path"]
            if exchange["method"] == request.method and (path == request.url.path or path == "*"):
                self.exchanges.remove(exchange)
                if exchange.get("raise"):
                    raise httpx.ReadError("connection reset by peer", request=request)
                headers = {
                    k: v
                    for k, v in (exchange.get("response_headers") or {}).items()
                    if k != "content-type"
                }
                status = exchange["status"]
                if status == 204:
                    return httpx.Response(204, headers=headers)
                return httpx.Response(status, json=exchange["response_body"], headers=headers)
        raise AssertionError(f"no recorded answer for {request.method} {request.url.path}")

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(r.content) if r.content else None
            for r in self.sent
            if r.method == method and r.url.path == path
        ]
