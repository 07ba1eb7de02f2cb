"""Fixtures for the studio dialect's tests: the fake studio server, on cue or on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# The same secret-registry reset, clock and retry policy as the API tests.
from tests.api.conftest import _fresh_secrets, clock, policy  # noqa: F401
from tests.paths import ROOT
from tests.studio.studio_fake import EMAIL, PASSWORD, FakeStudio

STUDIO_EXAMPLES = ROOT / "examples" / "studio"
WORKSPACE = "kaizenctl-test"


@pytest.fixture
def studio() -> FakeStudio:
    return FakeStudio()


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
