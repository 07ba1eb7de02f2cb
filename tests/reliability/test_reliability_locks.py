"""The set lock with real processes: two applies at once, and an apply killed holding it.

``kaizenctl apply`` runs as real processes against a reference server in this
test's process (with latency, so that an apply lasts long enough to overlap or
to be cut). Nothing here sleeps on a real clock: the kill waits on the server's
request log, the expired lease is reached with an injected clock.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from kaizenctl.api.connect import open_api
from kaizenctl.ownership.inventory import read_inventories
from kaizenctl.ownership.lock import DEFAULT_LEASE_S, LockHeldError, LockOptions, utc_now
from kaizenctl.reconcile import ApplyOptions, PlanOptions, apply_async, plan_async
from kaizenctl.server.testing import RunningServer, running_server
from tests.paths import EXAMPLES
from tests.reliability.reliability_support import (
    CLI_TIMEOUT_S,
    KAIZENCTL,
    cli_env,
    load,
    run_cli,
    settings_for,
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _agent_creates(server: RunningServer) -> int:
    return sum(1 for e in server.request_log() if e.method == "POST" and e.path == "/api/v1/agents")


def _start_apply(
    server: RunningServer, *extra: str, folder: Path = EXAMPLES
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(KAIZENCTL), "apply", "--auto-approve", *extra, str(folder)],
        env=cli_env(server),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.timeout(120)
def test_two_apply_processes_started_together_exactly_one_writes() -> None:
    # 100 ms a request keeps the first apply writing for seconds, far longer than the two
    # processes' start-up skew on a loaded machine (at 10 ms the second could start late
    # enough to find nothing left to do).
    with running_server(latency_ms=100, deploy_step_s=0.01) as server:
        processes = [_start_apply(server), _start_apply(server)]
        finished = [p.communicate(timeout=CLI_TIMEOUT_S) for p in processes]
        codes = sorted(p.returncode for p in processes)

        assert codes == [0, 1], finished
        refused = next(
            err.decode() for p, (_, err) in zip(processes, finished, strict=True) if p.returncode
        )
        assert "set 'default' is locked by" in refused
        assert "nothing was changed" in refused
        assert "kaizenctl force-unlock --set default" in refused
        assert _agent_creates(server) == 6
        again = run_cli("plan", "--detailed-exitcode", str(EXAMPLES), env=cli_env(server))
        assert again.code == 0, again.output


def _kill_holding_the_lock(server: RunningServer, folder: Path = EXAMPLES) -> int:
    """Start an apply and SIGKILL it once a few creates landed; its pid."""
    process = _start_apply(server, "--parallelism", "2", folder=folder)
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while _agent_creates(server) < 3:
            if process.poll() is not None:
                pytest.fail(f"the apply ended (exit {process.returncode}) before it was killed")
            if time.monotonic() > deadline:
                pytest.fail("the apply never reached its third create")
            time.sleep(0.02)  # polls the server's log, not a clock the code under test reads
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return process.pid
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.timeout(120)
def test_an_apply_killed_holding_the_lock_blocks_the_next_until_force_unlock() -> None:
    with running_server(latency_ms=30, deploy_step_s=0.01) as server:
        pid = _kill_holding_the_lock(server)
        server.set_faults(latency_ms=0)

        blocked = run_cli("apply", "--auto-approve", str(EXAMPLES), env=cli_env(server))
        assert blocked.code == 1
        assert f"(pid {pid})" in blocked.stderr
        found = re.search(r"force-unlock --set default (\S+)`", blocked.stderr)
        assert found, blocked.stderr
        wrong = run_cli("force-unlock", "not-the-id", env=cli_env(server))
        assert wrong.code == 1
        assert "has no lock with id not-the-id" in wrong.stderr

        unlocked = run_cli("force-unlock", found.group(1), env=cli_env(server))
        assert unlocked.code == 0, unlocked.output
        rerun = run_cli("apply", "--auto-approve", str(EXAMPLES), env=cli_env(server))
        assert rerun.code == 0, rerun.output
        _assert_converged_and_owned(server)


AGENT = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {{name: {name}}}
spec: {{system_prompt: Help., provider: openai, model: gpt-4o-mini}}
"""


@pytest.mark.timeout(120)
def test_an_apply_killed_holding_the_lock_lets_the_next_proceed_once_the_lease_ran_out(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    names = [f"helper-{n}" for n in range(12)]
    for name in names:
        (folder / f"{name}.yaml").write_text(AGENT.format(name=name))
    with running_server(latency_ms=30) as server:
        _kill_holding_the_lock(server, folder)
        server.set_faults(latency_ms=0)

        async def live_agents() -> list[str]:
            async with open_api(settings_for(server)) as api:
                return sorted(a.name for a in await api.agents.list_all())

        made = asyncio.run(live_agents())
        assert 3 <= len(made) < len(names)
        # What the killed apply made leaves the folder (all but one): the next --prune must
        # delete it, which it may only because the apply announced it before creating it.
        for name in made[1:]:
            (folder / f"{name}.yaml").unlink()
        resources = load(folder)

        async def apply_at(offset_s: float) -> tuple[list[str], bool]:
            later = LockOptions(clock=lambda: utc_now() + timedelta(seconds=offset_s))
            async with open_api(settings_for(server)) as api:
                plan, result = await apply_async(
                    api, resources, PlanOptions(prune=True), ApplyOptions(lock=later)
                )
            return sorted(a.name for a in plan.actions if a.verb == "delete"), result.ok

        with pytest.raises(LockHeldError, match="is locked by"):
            asyncio.run(apply_at(DEFAULT_LEASE_S - 5))
        deleted, ok = asyncio.run(apply_at(DEFAULT_LEASE_S + 1))

        assert ok
        assert deleted == made[1:]
        assert asyncio.run(live_agents()) == sorted(r.name for r in resources)


def _assert_converged_and_owned(server: RunningServer) -> None:
    """No duplicate, nothing to do, and every example resource in the set's record."""
    resources = load(EXAMPLES)

    async def check() -> None:
        async with open_api(settings_for(server)) as api:
            agents = [a.name for a in await api.agents.list_all()]
            assert sorted(agents) == sorted(set(agents))
            plan, live = await plan_async(api, resources, PlanOptions(prune=True))
            assert not plan.has_changes, plan.actions
            assert plan.adopt == ()
            # What the killed apply created was announced before it was created: owned.
            assert all(u.owners for u in plan.unmanaged), plan.unmanaged
            members = read_inventories(live.records)["default"].members
            assert {m.ref for m in members} == {r.ref for r in resources if r.kind != "Deployment"}
            assert all(m.id for m in members)

    asyncio.run(check())
