"""Fixtures for the studio dialect's tests: the fake studio server, on cue or on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaizenctl.api.retry import RetryPolicy
from kaizenctl.redact import clear_secrets
from tests.api.api_helpers import FakeClock
from tests.paths import ROOT
from tests.studio.studio_fake import EMAIL, PASSWORD, FakeStudio

STUDIO_EXAMPLES = ROOT / "examples" / "studio"
WORKSPACE = "kaizenctl-test"


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture
def studio() -> FakeStudio:
    return FakeStudio()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, clock=clock, random=lambda: 0.5)


@pytest.fixture
def studio_url(studio: FakeStudio) -> Iterator[str]:
    with studio.serving() as url:
        yield url


@pytest.fixture
def studio_env(studio_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The command line pointed at the fake over real HTTP, dialect left to auto."""
    monkeypatch.setenv("KAIZEN_API_URL", studio_url)
    monkeypatch.setenv("KAIZEN_EMAIL", EMAIL)
    monkeypatch.setenv("KAIZEN_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAIZEN_WORKSPACE", WORKSPACE)
    for name in ("KAIZEN_TOKEN", "KAIZEN_REFRESH_TOKEN", "KAIZEN_DIALECT"):
        monkeypatch.delenv(name, raising=False)
    return studio_url


@pytest.fixture
def studio_examples(tmp_path: Path) -> Path:
    """A private copy of examples/studio that a test may edit."""
    folder = tmp_path / "studio"
    shutil.copytree(STUDIO_EXAMPLES, folder)
    return folder
