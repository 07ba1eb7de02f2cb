"""Manifest sets on the studio dialect: records as inactive policies, prune scoped to a set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kaizenctl.cli import main
from tests.studio.studio_fake import FakeStudio


def _write_agent(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        "apiVersion: kaizen.io/v1\n"
        "kind: Agent\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n"
        f"  system_prompt: You are {name}.\n"
        "  model: gpt-4o-mini\n"
    )


def test_records_are_inactive_policies_hidden_from_live_state(
    studio: FakeStudio, studio_env: str, studio_examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "--auto-approve", "--set", "team-a", str(studio_examples)]) == 0
    records = [p for p in studio.policies.values() if p["name"].startswith("kaizenctl.")]
    # One inventory, and the lock released after the apply.
    assert [p["name"].partition("@")[0] for p in records] == ["kaizenctl.set.team-a"]
    assert records[0]["status"] == "inactive"
    capsys.readouterr()
    assert (
        main(["plan", "--format", "json", "--prune", "--set", "team-a", str(studio_examples)]) == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert plan["actions"] == []
    assert all("kaizenctl." not in item["name"] for item in plan.get("unmanaged", []))


def test_prune_of_one_set_never_touches_another_sets_agents(
    studio: FakeStudio, studio_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team_a, team_b = tmp_path / "a", tmp_path / "b"
    _write_agent(team_a, "alpha")
    _write_agent(team_b, "bravo")
    _write_agent(team_b, "charlie")
    assert main(["apply", "--auto-approve", "--set", "team-b", str(team_b)]) == 0
    assert main(["apply", "--auto-approve", "--set", "team-a", str(team_a)]) == 0

    capsys.readouterr()
    assert main(["plan", "--format", "json", "--prune", "--set", "team-a", str(team_a)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [a["id"] for a in plan["actions"]] == []

    assert main(["apply", "--auto-approve", "--prune", "--set", "team-a", str(team_a)]) == 0
    assert sorted(a["name"] for a in studio.live_agents()) == ["alpha", "bravo", "charlie"]

    # What team B no longer declares is pruned by team B, and only that.
    shutil.rmtree(team_b)
    _write_agent(team_b, "bravo")
    assert main(["apply", "--auto-approve", "--prune", "--set", "team-b", str(team_b)]) == 0
    assert sorted(a["name"] for a in studio.live_agents()) == ["alpha", "bravo"]
