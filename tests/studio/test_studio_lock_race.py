"""The set lock on the studio dialect, where names are not unique: create, then list, and
the oldest claim wins (docs/ownership.md, "The set lock").

Two ``kaizenctl apply`` processes run against the studio fake over loopback. The race is
made on cue, not by timing: the fake holds each apply's list of the claims (after it made
its own) until the other's list arrives too, so both list while both claims exist. Nothing
here sleeps on a real clock (the fake's hold is a condition, bounded by a timeout).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kaizenctl.cli import main
from kaizenctl.ownership.lock import LockData, lock_name
from tests.reliability.reliability_support import CLI_TIMEOUT_S, KAIZENCTL, cli_env, run_cli
from tests.studio.conftest import WORKSPACE
from tests.studio.studio_fake import (
    EMAIL,
    ORG,
    PASSWORD,
    PREFIX,
    RECORD_RESOURCE_TYPE,
    FakeStudio,
    Logged,
    _now,
)

LOCK_RECORD = f"{lock_name('default')}@"


def _env(url: str) -> dict[str, str]:
    return cli_env(
        None,
        KAIZEN_API_URL=url,
        KAIZEN_EMAIL=EMAIL,
        KAIZEN_PASSWORD=PASSWORD,
        KAIZEN_WORKSPACE=WORKSPACE,
    )


def _start_apply(url: str, folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(KAIZENCTL), "apply", "--auto-approve", str(folder)],
        env=_env(url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _add_workspace(studio: FakeStudio) -> str:
    workspace_id = studio.new_id()
    studio.workspaces[workspace_id] = {
        "id": workspace_id,
        "name": WORKSPACE,
        "organizationId": ORG,
        "workspaceType": "permanent",
        "isArchived": False,
    }
    return workspace_id


def _writes_by_caller(log: list[Logged]) -> dict[str, list[Logged]]:
    writes: dict[str, list[Logged]] = defaultdict(list)
    for entry in log:
        if entry.is_write:
            writes[entry.token].append(entry)
    return writes


def _is_lock_write(entry: Logged) -> bool:
    return entry.name.startswith(LOCK_RECORD) or (
        entry.method == "DELETE" and entry.path.startswith(f"{PREFIX}/policies/")
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workspace_exists", [True, False], ids=["workspace-exists", "first-apply"])
def test_two_applies_started_together_exactly_one_writes(
    studio: FakeStudio, studio_url: str, studio_examples: Path, workspace_exists: bool
) -> None:
    if workspace_exists:
        _add_workspace(studio)
    studio.barriers = {"claims": 2, "workspaces": 2}
    processes = [_start_apply(studio_url, studio_examples) for _ in range(2)]
    finished = [p.communicate(timeout=CLI_TIMEOUT_S) for p in processes]

    # The race was real: both listed the claims while both claims existed (and, on a first
    # apply, both had found the workspace missing).
    assert studio.lock_records_created == 2
    assert studio.held_timed_out == 0
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 1], finished
    winner = next(p for p in processes if p.returncode == 0)
    refused = next(
        err.decode() for p, (_, err) in zip(processes, finished, strict=True) if p.returncode
    )
    assert "set 'default' is locked by" in refused
    assert f"(pid {winner.pid}) since 20" in refused
    # --lock-timeout 0 refuses at once: it says nothing of waiting (the settle is not a wait).
    assert "nothing was changed. Wait for it" in refused

    writes = _writes_by_caller(studio.log)
    assert len(writes) == 2, writes
    resource_writers = [
        token for token, entries in writes.items() if not all(map(_is_lock_write, entries))
    ]
    assert len(resource_writers) == 1, writes
    (loser,) = set(writes) - set(resource_writers)
    # The loser's only writes: its claim, and withdrawing that same claim.
    claim, withdrawal = writes[loser]
    assert claim.method == "POST"
    assert claim.name.startswith(LOCK_RECORD)
    assert withdrawal.method == "DELETE"
    assert [w["name"] for w in studio.workspaces.values()] == [WORKSPACE]
    assert studio.lock_records() == []

    again = run_cli("plan", "--detailed-exitcode", str(studio_examples), env=_env(studio_url))
    assert again.code == 0, again.output


def _plant_claim(studio: FakeStudio, workspace_id: str, holder: str, since: datetime) -> str:
    """A live lock record of set default, as another apply's create leaves it."""
    data = LockData(
        set="default",
        lock_id="0f0f0f0f-aaaa-bbbb-cccc-000000000001",
        holder=holder,
        since=since,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    policy_id = studio.new_id()
    studio.policies[policy_id] = {
        "id": policy_id,
        "organization_id": ORG,
        "name": f"{lock_name('default')}@{workspace_id}",
        "description": "",
        "resource_type": RECORD_RESOURCE_TYPE,
        "action": "none",
        "effect": "allow",
        "conditions": {"kaizenctl": data.model_dump(mode="json")},
        "resource_refs": "",
        "priority": 0,
        "status": "inactive",
        "created_by": "someone",
        "created_at": _now(),
        "updated_at": _now(),
    }
    return policy_id


def test_the_later_claim_backs_off_and_withdraws_its_own_record(
    studio: FakeStudio,
    studio_env: str,
    studio_examples: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workspace_id = _add_workspace(studio)
    since = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
    older = _plant_claim(studio, workspace_id, "ci@runner-7 (pid 4121)", since)
    before = len(studio.log)
    capsys.readouterr()

    assert main(["apply", "--auto-approve", str(studio_examples)]) == 1
    err = capsys.readouterr().err
    assert "set 'default' is locked by ci@runner-7 (pid 4121) since 2026-12-01T19:00:00" in err
    assert "nothing was changed. Wait for it" in err
    # Its claim came after the older one, so it withdrew it: only the holder's is left.
    assert [p["id"] for p in studio.lock_records()] == [older]
    writes = [e for e in studio.log[before:] if e.is_write]
    assert [e.method for e in writes] == ["POST", "DELETE"], writes
    assert writes[0].name.startswith(LOCK_RECORD)
    assert writes[1].path != f"{PREFIX}/policies/{older}"
    assert studio.live_agents() == []

    # Once the holder is gone (force-unlock by its lock id), the next apply writes and
    # leaves no lock record behind.
    assert main(["force-unlock", "0f0f0f0f-aaaa-bbbb-cccc-000000000001"]) == 0
    assert main(["apply", "--auto-approve", str(studio_examples)]) == 0
    assert studio.lock_records() == []
    assert main(["plan", "--detailed-exitcode", str(studio_examples)]) == 0
