"""Fixtures for end-to-end reconciler tests over real HTTP against the reference server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kaizenctl.server.testing import running_server
from tests.reconcile.harness import Kaizen


@pytest.fixture
def kaizen(examples: Path) -> Iterator[Kaizen]:
    """The examples against a fresh server whose deployments settle quickly."""
    with running_server(deploy_step_s=0.01) as live:
        yield Kaizen(live, examples)
