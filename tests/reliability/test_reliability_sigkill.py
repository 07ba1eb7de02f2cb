"""An apply killed with SIGKILL half-way, then run again, converges with no duplicate.

``kaizenctl apply`` runs as a real process against a reference server (in this
test's process, with added latency so the apply takes long enough to be cut).
The test watches the server's request log and kills the client with SIGKILL
once a given number of writes has been seen — no chance for it to clean up.
A second apply must finish the job, the plan after it must be empty, and the
server must hold exactly one of everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.generate import SetShape, write_set
from kaizenctl.server.testing import RunningServer, running_server
from tests.reliability.reliability_support import (
    CLI_TIMEOUT_S,
    KAIZENCTL,
    cli_env,
    duplicate_problems,
    inventory,
    load,
    run_cli,
)

# 135 resources: ~230 requests for a first apply, about 1.5 s at 20 ms and parallelism 4.
SHAPE = SetShape(agents=60, pipelines=15, nodes_per_pipeline=4, policies=45, deployments=15)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _writes(server: RunningServer) -> int:
    return sum(
        1
        for entry in server.request_log()
        if entry.method in WRITE_METHODS and not entry.path.startswith("/api/v1/auth/")
    )


def _kill_after_writes(server: RunningServer, manifests: Path, writes: int) -> int:
    """Start an apply, SIGKILL it once the server has seen ``writes`` writes; its exit code."""
    process = subprocess.Popen(
        [str(KAIZENCTL), "apply", "--auto-approve", "--parallelism", "4", str(manifests)],
        env=cli_env(server),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while _writes(server) < writes:
            if process.poll() is not None:
                pytest.fail(f"the apply ended (exit {process.returncode}) before it was killed")
            if time.monotonic() > deadline:
                pytest.fail("the apply never reached the write to kill it at")
            # Each look reads the whole log from the server in this process: not too often.
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("kill_at_write", "deploy_step_s"),
    [
        (25, 0.0),  # among the creates
        (135, 0.0),  # creates done: among the graph writes and the first deploys
        (150, 0.15),  # deployments in flight (pending/deploying) when the client dies
    ],
    ids=["creates", "graphs-and-deploys", "deploys-in-flight"],
)
def test_apply_killed_half_way_then_rerun_converges_without_duplicates(
    tmp_path: Path, kill_at_write: int, deploy_step_s: float
) -> None:
    manifests = write_set(tmp_path / "set", SHAPE, prefix="kill")
    resources = load(manifests)
    with running_server(latency_ms=20, deploy_step_s=deploy_step_s) as server:
        code = _kill_after_writes(server, manifests, kill_at_write)
        assert code == -signal.SIGKILL
        total_writes = SHAPE.resources + SHAPE.pipelines  # creates + one graph write each
        assert _writes(server) < total_writes + SHAPE.deployments, "killed too late to matter"

        server.set_faults(latency_ms=0)
        # The killed apply still holds the set's lock (until its lease runs out): break it,
        # by the id the refused apply names.
        # (When the killed apply had already sent every write, there is nothing to do and
        # the next apply needs no lock at all.)
        blocked = run_cli("apply", "--auto-approve", str(manifests), env=cli_env(server))
        if blocked.code != 0 or "No changes" not in blocked.stdout:
            assert blocked.code == 1, blocked.output
            found = re.search(r"force-unlock --set default (\S+)`", blocked.stderr)
            assert found, blocked.output
            unlocked = run_cli("force-unlock", found.group(1), env=cli_env(server))
            assert unlocked.code == 0, unlocked.output
        rerun = run_cli("apply", "--auto-approve", str(manifests), env=cli_env(server))
        assert rerun.code == 0, rerun.output
        again = run_cli("plan", "--detailed-exitcode", str(manifests), env=cli_env(server))
        assert again.code == 0, again.output
        assert "No changes" in again.stdout
        assert duplicate_problems(inventory(server), resources) == []
