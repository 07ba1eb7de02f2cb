"""A stand-in agent gateway on loopback, started and stopped by the tests.

It answers what Kaizen Studio calls on a gateway: ``POST /api/v1/agents/register``
(201 with the registration's ``id``), ``DELETE /api/v1/agents/{id}`` and
``GET /health``, and records every request (method, path, Authorization header,
JSON body) so a test can check what the gateway was sent. It listens on a free
port of 127.0.0.1 only and stops when its ``with`` block ends.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class GatewayRequest:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class GatewayStub:
    url: str
    requests: list[GatewayRequest] = field(default_factory=list)
    # registration id -> the registered body (what the gateway now serves)
    registered: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_to(self, method: str, prefix: str = "") -> list[GatewayRequest]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]


def _handler(stub: GatewayStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with stub.lock:
                stub.requests.append(
                    GatewayRequest(self.command, self.path, self.headers.get("Authorization"), body)
                )
            return body

        def do_GET(self) -> None:
            self._record()
            if self.path.rstrip("/") == "/health":
                self._answer(200, {"status": "healthy"})
            else:
                self._answer(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = self._record()
            if self.path != "/api/v1/agents/register":
                self._answer(404, {"detail": "not found"})
                return
            registration = f"reg-{uuid.uuid4().hex[:12]}"
            with stub.lock:
                stub.registered[registration] = body
            self._answer(201, {"id": registration, "status": "registered"})

        def do_DELETE(self) -> None:
            self._record()
            prefix = "/api/v1/agents/"
            if not self.path.startswith(prefix):
                self._answer(404, {"detail": "not found"})
                return
            with stub.lock:
                stub.registered.pop(self.path[len(prefix) :], None)
            self._answer(200, {"status": "deleted"})

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the test reads ``requests``

    return Handler


@contextmanager
def gateway_stub() -> Iterator[GatewayStub]:
    """A running stub on a free loopback port; stopped (and its thread joined) on exit."""
    stub = GatewayStub(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="gateway-stub", daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
