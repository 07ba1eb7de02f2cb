"""Shared fixtures: a fresh reference server per test, on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaizenctl.server.testing import ManualClock, RunningServer, running_server
from tests.paths import EXAMPLES


@pytest.fixture
def server_clock() -> ManualClock:
    """The server's time in a test marked ``manual_clock``: move it, never sleep."""
    return ManualClock()


@pytest.fixture
def server(request: pytest.FixtureRequest, server_clock: ManualClock) -> Iterator[RunningServer]:
    """A fresh in-memory server with the development user registered."""
    clock = server_clock if request.node.get_closest_marker("manual_clock") else None
    with running_server(clock=clock) as live:
        yield live


@pytest.fixture
def server_url(server: RunningServer) -> str:
    """The base URL of ``server`` (without ``/api/v1``)."""
    return server.url


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of examples/manifests that a test may edit."""
    folder = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, folder)
    return folder
