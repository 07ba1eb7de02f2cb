"""Shared fixtures: a fresh reference server per test, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kaizenctl.server.testing import RunningServer, running_server


@pytest.fixture
def server() -> Iterator[RunningServer]:
    """A fresh in-memory server with the development user registered."""
    with running_server() as live:
        yield live


@pytest.fixture
def server_url(server: RunningServer) -> str:
    """The base URL of ``server`` (without ``/api/v1``)."""
    return server.url
