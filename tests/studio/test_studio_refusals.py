"""What a server cannot hold fails at plan, at file:line, with the reason — and writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kaizenctl.cli import main
from kaizenctl.server.testing import RunningServer
from tests.studio.studio_fake import FakeStudio
from tests.studio.unholdable import UNHOLDABLE, UNHOLDABLE_REFUSALS


def test_an_unholdable_set_fails_at_plan_with_file_line_and_zero_writes(
    studio: FakeStudio, studio_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "unholdable.yaml"
    manifest.write_text(UNHOLDABLE)
    capsys.readouterr()
    for command in (["plan"], ["apply", "--auto-approve"]):
        assert main([*command, str(manifest)]) == 1
        err = capsys.readouterr().err
        for line, text in UNHOLDABLE_REFUSALS.items():
            assert re.search(rf"{re.escape(str(manifest))}:{line}:\d+: {re.escape(text)}", err), (
                line,
                err,
            )
    assert studio.writes() == []
    # Refused before anything was read: only the dialect probe and the login went out.
    assert [p for _, p in studio.requests] == [
        "/api/v1/pipelines/patterns",
        "/api/v1/auth/login",
    ] * 2


def test_the_contract_dialect_refuses_agent_type_and_a_missing_provider_the_same_way(
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAIZEN_API_URL", server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", server.password)
    monkeypatch.delenv("KAIZEN_DIALECT", raising=False)
    manifest = tmp_path / "studio-only.yaml"
    manifest.write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n"
        "  system_prompt: p\n  model: m\n  agent_type: task\n"
    )
    capsys.readouterr()
    assert main(["plan", "-v", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"{manifest}:7:" in err
    assert "agent_type" in err
    assert re.search(rf"{re.escape(str(manifest))}:\d+:\d+: Agent/a: provider", err), err
    assert [e.path for e in server.request_log() if "/auth/" not in e.path] == [
        "/api/v1/pipelines/patterns"
    ]


def test_auto_picks_the_contract_for_a_contract_server(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from tests.paths import EXAMPLES

    monkeypatch.setenv("KAIZEN_API_URL", server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", server.password)
    with caplog.at_level(logging.INFO, logger="kaizenctl"):
        assert main(["plan", "-v", str(EXAMPLES)]) == 0
    assert any("dialect: contract" in r.getMessage() for r in caplog.records)
