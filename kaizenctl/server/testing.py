"""Run the reference server inside a test process: ``running_server()``.

The server runs under uvicorn in a daemon thread on 127.0.0.1 with a free port,
with the admin endpoint mounted so tests can change fault knobs at run time and
read the request log. ``clock`` replaces the server's time (token expiry, the
deployment life cycle): a test moves a ``ManualClock`` instead of sleeping.
Other test suites build on this; keep the names stable.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from kaizenctl.server.app import ServerState, build_asgi, ensure_dev_user
from kaizenctl.server.db import Database
from kaizenctl.server.faults import FaultKnobs, FaultState, RequestLogEntry
from kaizenctl.server.listen import bind

__all__ = ["ManualClock", "RequestLogEntry", "RunningServer", "running_server"]

DEV_EMAIL = "dev@kaizen.local"


@dataclass(frozen=True)
class RunningServer:
    """A live server: where it listens and how to log in."""

    url: str
    email: str
    password: str

    def set_faults(self, **knobs: object) -> None:
        """Change fault knobs at run time, through the admin HTTP endpoint."""
        response = httpx.put(f"{self.url}/admin/faults", json=knobs, timeout=10)
        response.raise_for_status()

    def faults(self) -> dict[str, object]:
        response = httpx.get(f"{self.url}/admin/faults", timeout=10)
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    def request_log(self) -> list[RequestLogEntry]:
        """Every /api/v1 request so far, oldest first (paths without query string)."""
        response = httpx.get(f"{self.url}/admin/requests", timeout=10)
        response.raise_for_status()
        return [RequestLogEntry(**entry) for entry in response.json()]

    def clear_request_log(self) -> None:
        httpx.delete(f"{self.url}/admin/requests", timeout=10).raise_for_status()


class ManualClock:
    """Epoch seconds that move only when told to (``advance``) or when slept on.

    One instance can be the server's clock and, through ``sleep``, the client's
    ``RetryPolicy`` clock too: a client waiting out a 429 then moves server time,
    so a token can expire during the wait without anyone really waiting.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds
        await asyncio.sleep(0)  # still let other tasks run


@contextmanager
def running_server(
    *,
    db_path: str | None = None,
    clock: Callable[[], float] | None = None,
    **fault_knobs: object,
) -> Iterator[RunningServer]:
    """Start a server (in memory unless ``db_path``), yield it, stop it on exit."""
    knobs = FaultKnobs.model_validate(fault_knobs)
    state = ServerState(db=Database(db_path), faults=FaultState(knobs), clock=clock or time.time)
    password = secrets.token_urlsafe(12)
    ensure_dev_user(state, DEV_EMAIL, password)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_asgi(state, admin=True),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"kaizen-server-{port}"
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield RunningServer(url=f"http://127.0.0.1:{port}", email=DEV_EMAIL, password=password)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        state.db.close()
