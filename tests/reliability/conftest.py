"""Fixtures of the reliability suites (faults, SIGKILL, bad input, secrets).

The repository root is on ``sys.path`` (pyproject's pytest ``pythonpath``), so
these tests share the set generator with the benchmarks (``benchmarks.generate``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kaizenctl.redact import clear_secrets


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    # The redaction registry is process-wide: a secret registered by one test must not
    # mask (and so hide a leak in) the next one.
    clear_secrets()
    yield
    clear_secrets()
