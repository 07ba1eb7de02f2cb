"""Fixtures for the API tests: an in-memory fake server, a retry policy that never sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kaizenctl.api.retry import RetryPolicy
from kaizenctl.redact import clear_secrets
from tests.api.api_fake import FakeKaizen
from tests.api.api_helpers import FakeClock


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture
def fake() -> FakeKaizen:
    return FakeKaizen()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, clock=clock, random=lambda: 0.5)
