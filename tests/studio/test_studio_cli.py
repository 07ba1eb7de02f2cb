"""The studio dialect end to end, through the command line, over real HTTP to the fake."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kaizenctl.cli import main
from tests.studio.conftest import WORKSPACE
from tests.studio.studio_fake import FakeStudio


def test_from_an_empty_organization_apply_then_plan_shows_no_changes_twice(
    studio: FakeStudio, studio_env: str, studio_examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--detailed-exitcode", str(studio_examples)]) == 2
    # Planning wrote nothing, not even the missing workspace.
    assert studio.writes() == []
    assert studio.workspaces == {}

    assert main(["apply", "--auto-approve", str(studio_examples)]) == 0
    assert [w["name"] for w in studio.workspaces.values()] == [WORKSPACE]
    assert sorted(a["name"] for a in studio.live_agents()) == [
        "billing-expert",
        "summarizer",
        "support-lead",
        "tech-support",
    ]
    capsys.readouterr()

    assert main(["plan", "--detailed-exitcode", str(studio_examples)]) == 0
    assert main(["plan", "--detailed-exitcode", str(studio_examples)]) == 0
    assert "No changes." in capsys.readouterr().out


def test_auto_says_which_dialect_it_picked_at_v(
    studio_env: str, studio_examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kaizenctl"):
        assert main(["plan", "-v", str(studio_examples)]) == 0
    assert any("dialect: studio" in record.getMessage() for record in caplog.records)
