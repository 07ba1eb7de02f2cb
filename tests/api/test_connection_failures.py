"""Failing to connect says why, quickly, so a person can act (issue 14, items 11-13).

Real sockets on 127.0.0.1: a port nothing listens on, the plain-http reference
server reached over https, a web server that is not Kaizen Studio. Retry waits
run on a fake clock.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from kaizenctl.api.connect import connect_v1
from kaizenctl.api.errors import ApiError, TransportError
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.server.testing import RunningServer
from tests.api.api_helpers import FakeClock, run


def _connect(settings: ConnectionSettings, policy: RetryPolicy) -> None:
    async def attempt() -> None:
        api = await connect_v1(settings, policy=policy)
        await api.aclose()

    run(attempt())


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _settings(api_url: str) -> ConnectionSettings:
    return ConnectionSettings(api_url=api_url, email="dev@kaizen.local", password="irrelevant")


# ---- item 11: a refused connection fails within a couple of seconds, saying so -------------


def test_item11_a_closed_port_fails_within_two_seconds_saying_connection_refused(
    policy: RetryPolicy, clock: FakeClock
) -> None:
    port = _closed_port()

    with pytest.raises(TransportError) as caught:
        _connect(_settings(f"http://127.0.0.1:{port}"), policy)

    assert sum(clock.sleeps) <= 2.0
    message = str(caught.value)
    assert f"connection refused: nothing listens at 127.0.0.1:{port}" in message
    assert "is the server running" in message


def test_item11_an_unresolvable_host_fails_at_once_saying_so(
    policy: RetryPolicy, clock: FakeClock
) -> None:
    with pytest.raises(TransportError, match=r"cannot resolve the host name no-such-host\.invalid"):
        _connect(_settings("https://no-such-host.invalid"), policy)

    assert sum(clock.sleeps) <= 2.0


def test_item11_the_cli_reports_a_closed_port_fast(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from kaizenctl.cli import main
    from tests.paths import EXAMPLES

    monkeypatch.setenv("KAIZEN_API_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("KAIZEN_EMAIL", "dev@kaizen.local")
    monkeypatch.setenv("KAIZEN_PASSWORD", "irrelevant")
    monkeypatch.delenv("KAIZEN_TOKEN", raising=False)
    started = time.monotonic()

    assert main(["plan", str(EXAMPLES)]) == 1

    assert time.monotonic() - started < 5  # was 10 s: the whole retry budget
    assert "connection refused" in capsys.readouterr().err


# ---- item 12: https to a plain-http server says the server does not speak TLS --------------


def test_item12_https_to_a_plain_http_server_says_it_does_not_speak_tls(
    server: RunningServer, policy: RetryPolicy, clock: FakeClock
) -> None:
    https_url = server.url.replace("http://", "https://")

    with pytest.raises(TransportError) as caught:
        _connect(_settings(https_url), policy)

    message = str(caught.value)
    assert "does not speak TLS" in message
    assert f"use {server.url}" in message
    assert "--ca-bundle" not in message
    assert clock.sleeps == []  # no retry can change the protocol


# ---- item 13: a wrong API URL gets a hint at the likely cause ------------------------------


def test_item13_an_api_url_ending_in_api_v1_hints_at_the_base_url(
    server: RunningServer, policy: RetryPolicy
) -> None:
    settings = ConnectionSettings(
        api_url=server.url + "/api/v1", email=server.email, password=server.password
    )

    with pytest.raises(ApiError) as caught:
        _connect(settings, policy)

    message = str(caught.value)
    assert "POST /api/v1/api/v1/auth/login answered 404" in message
    assert f"without /api/v1: try {server.url}" in message


@pytest.fixture
def not_kaizen() -> Iterator[str]:
    """A web server on loopback that is not Kaizen Studio: it answers every POST 501."""
    web = http.server.HTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{web.server_port}"
    finally:
        web.shutdown()
        web.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_item13_a_server_that_is_not_kaizen_studio_is_named_as_such(
    not_kaizen: str, policy: RetryPolicy
) -> None:
    with pytest.raises(ApiError) as caught:
        _connect(_settings(not_kaizen), policy)

    message = str(caught.value)
    assert "answered 501" in message
    assert f"{not_kaizen} does not look like a Kaizen Studio server" in message
