"""Fixtures of the reliability suites (faults, SIGKILL, bad input, secrets).

The repository root goes on ``sys.path`` so these tests share the set
generator with the benchmarks (``benchmarks.generate``) however pytest is run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaizenctl.redact import clear_secrets

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    # The redaction registry is process-wide: a secret registered by one test must not
    # mask (and so hide a leak in) the next one.
    clear_secrets()
    yield
    clear_secrets()
