"""The reference server as a separate process, for measurements that must not share a CPU budget.

``running_server`` (kaizenctl.server.testing) runs the server in a thread of
the caller; a benchmark that did that would count the server's work as the
client's. ``ServerProcess`` starts ``kaizenctl serve --admin`` on a free
loopback port instead, and reads the request log over HTTP.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

KAIZENCTL = Path(sys.executable).with_name("kaizenctl")
EMAIL = "dev@kaizen.local"
START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerProcess:
    """A running ``kaizenctl serve``: where it listens, how to log in, its request log."""

    url: str
    email: str
    password: str
    pid: int

    def request_log(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/admin/requests", timeout=30)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    def clear_request_log(self) -> None:
        httpx.delete(f"{self.url}/admin/requests", timeout=30).raise_for_status()

    def set_faults(self, **knobs: object) -> None:
        httpx.put(f"{self.url}/admin/faults", json=knobs, timeout=30).raise_for_status()

    def client_env(self) -> dict[str, str]:
        """Environment for a kaizenctl client process pointed at this server."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "NO_COLOR": "1",
            "KAIZEN_API_URL": self.url,
            "KAIZEN_EMAIL": self.email,
            "KAIZEN_PASSWORD": self.password,
        }


def cpu_split() -> tuple[set[int], set[int]] | None:
    """(client CPUs, server CPUs): the last allowed CPU for the server, the rest for the client.

    Pinning keeps the two from taking turns on one core, so the client's wall time
    and CPU time are not inflated by the server's work. None on a single CPU or
    where affinity cannot be set (not Linux).
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return set(allowed[:-1]), {allowed[-1]}


def pinned_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpus`` (None: no pinning)."""
    if cpus is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


@contextmanager
def server_process(**knobs: object) -> Iterator[ServerProcess]:
    """Start ``kaizenctl serve`` with these fault knobs (flag names with underscores); stop it.

    The server runs pinned to its own CPU (``cpu_split``) where there are two or more.
    """
    port = free_port()
    password = secrets.token_urlsafe(16)
    args = [str(KAIZENCTL), "serve", "--port", str(port), "--admin", "--log-level", "warning"]
    for name, value in knobs.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "KAIZEN_SERVE_PASSWORD": password,
    }
    # A file, not a pipe: a pipe nobody reads would block a chatty server.
    with tempfile.TemporaryFile() as errors:
        split = cpu_split()
        process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            preexec_fn=pinned_to(split[1] if split else None),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    errors.seek(0)
                    stderr = errors.read().decode(errors="replace")
                    raise RuntimeError(
                        f"kaizenctl serve exited with {process.returncode}: {stderr}"
                    )
                try:
                    httpx.get(f"{url}/admin/faults", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("kaizenctl serve did not start in time") from None
                    time.sleep(0.05)
            yield ServerProcess(url=url, email=EMAIL, password=password, pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
