"""A saved plan records its dialect, applies in it, and is refused in another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaizenctl.api.capabilities import CONTRACT_CAPABILITIES, Capabilities
from kaizenctl.cli import main
from kaizenctl.errors import UsageError
from kaizenctl.gitops.saved_plan import check_saved_plan, read_saved_plan
from tests.api.api_helpers import run
from tests.studio.studio_fake import FakeStudio


def test_a_saved_plan_records_the_studio_dialect_and_applies_in_it(
    studio: FakeStudio, studio_env: str, studio_examples: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", "--out", str(saved), str(studio_examples)]) == 0
    assert json.loads(saved.read_text())["dialect"] == "studio"
    assert studio.writes() == []
    assert main(["apply", "--auto-approve", "--plan", str(saved)]) == 0
    assert len(studio.live_agents()) == 4
    assert main(["plan", "--detailed-exitcode", str(studio_examples)]) == 0


class _ContractServerAt:
    """Just enough of KaizenApi to reach the dialect check: same URL, other dialect."""

    def __init__(self, url: str) -> None:
        self.server_identity = url

    @property
    def capabilities(self) -> Capabilities:
        return CONTRACT_CAPABILITIES

    async def current_user(self) -> None:
        raise AssertionError("the dialect check comes before any request")


def test_a_saved_plan_is_refused_in_another_dialect(
    studio_env: str, studio_examples: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    assert main(["plan", "--out", str(saved), str(studio_examples)]) == 0
    other = _ContractServerAt(studio_env)
    with pytest.raises(UsageError, match="made in the studio dialect") as caught:
        run(check_saved_plan(other, read_saved_plan(saved)))  # type: ignore[arg-type]
    assert "nothing was changed" in str(caught.value)
