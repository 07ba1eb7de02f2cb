"""Applies converge under faults: 429s, 503s, writes whose answer is lost, 1-second tokens.

Each test starts an empty reference server with the faults on, applies until a
plan shows no changes (a bounded number of times: under faults a single run may
fail part-way, and a rerun must finish the job), then turns the faults off and
checks that the server holds exactly what the manifests describe — no
duplicate made by a retried create, deploy or promote — and that one more plan
is empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.generate import SetShape, write_set
from kaizenctl.manifests.models import Resource
from kaizenctl.server.testing import RunningServer, running_server
from tests.paths import EXAMPLES
from tests.reliability.reliability_support import (
    converge,
    duplicate_problems,
    inventory,
    load,
)

FAULTS: dict[str, Any] = {
    "rate_429": 0.2,
    "rate_503": 0.1,
    "rate_drop_after_commit": 0.1,
    "access_token_ttl_s": 1.0,
    # Short waits keep the suite fast; the client still has to honour them.
    "retry_after_s": 0.05,
}
# 300 resources: 150 agents, 40 pipelines of 4 nodes, 90 policies, 20 deployments
# (6 full development -> staging -> production chains and a development + staging pair).
GENERATED = SetShape(agents=150, pipelines=40, nodes_per_pipeline=4, policies=90, deployments=20)
MAX_APPLIES = 5


def _assert_converged_without_duplicates(server: RunningServer, resources: list[Resource]) -> None:
    outcome = converge(server, resources, max_applies=MAX_APPLIES)
    assert outcome.converged, (
        f"no empty plan after {outcome.applies} applies; errors: {outcome.errors}"
    )
    server.set_faults(rate_429=0, rate_503=0, rate_drop_after_commit=0, access_token_ttl_s=3600)
    assert duplicate_problems(inventory(server), resources) == []
    # With faults off, the plan right after must still be empty (nothing half-done hides).
    again = converge(server, resources, max_applies=0)
    assert again.converged


@pytest.mark.timeout(60)
def test_faults_actually_happen() -> None:
    """Guards the other tests: with these knobs the server really does refuse and drop."""
    resources = load(EXAMPLES)
    with running_server(fault_seed=7, **FAULTS) as server:
        converge(server, resources)
        statuses = [entry.status for entry in server.request_log()]
        dropped = [entry for entry in server.request_log() if entry.dropped]
    assert statuses.count(429) > 0
    assert statuses.count(503) > 0
    assert dropped


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_examples_converge_under_faults_without_duplicates(seed: int) -> None:
    resources = load(EXAMPLES)
    with running_server(fault_seed=seed, **FAULTS) as server:
        _assert_converged_without_duplicates(server, resources)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_300_generated_resources_converge_under_faults_without_duplicates(
    tmp_path: Path,
) -> None:
    resources = load(write_set(tmp_path, GENERATED, prefix="flt"))
    assert len(resources) == 300
    with running_server(fault_seed=11, **FAULTS) as server:
        _assert_converged_without_duplicates(server, resources)
