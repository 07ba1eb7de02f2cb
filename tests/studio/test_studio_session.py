"""Session behaviour against the fake: one login per run, rotating refresh, no secret shown."""

from __future__ import annotations

import logging

import pytest

from kaizenctl.api.connect import connect_studio
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.errors import UsageError
from tests.api.api_helpers import run
from tests.studio.studio_fake import EMAIL, PASSWORD, FakeStudio


def _settings(**overrides: object) -> ConnectionSettings:
    values: dict[str, object] = {
        "api_url": "http://127.0.0.1:9",
        "email": EMAIL,
        "password": PASSWORD,
        "dialect": "studio",
        "workspace": "w",
    }
    values.update(overrides)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def test_an_expired_token_is_refreshed_once_with_rotation_and_no_second_login(
    studio: FakeStudio, policy: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        api = await connect_studio(_settings(), transport=studio.transport(), policy=policy)
        try:
            await api.policies.list_all()
            first_refresh = api.session.tokens.refresh_token
            studio.access.clear()  # every access token expires
            await api.policies.list_all()
            assert api.session.tokens.refresh_token != first_refresh
            assert first_refresh not in studio.refresh  # the used one is dead
            studio.access.clear()
            await api.policies.list_all()
        finally:
            await api.aclose()

    with caplog.at_level(logging.DEBUG, logger="kaizenctl"):
        run(go())
    assert studio.logins == 1
    assert studio.count("POST", "/auth/refresh") == 2
    assert PASSWORD not in caplog.text
    assert not any(token in caplog.text for token in studio.access)


def test_the_studio_dialect_needs_a_workspace(studio: FakeStudio, policy: RetryPolicy) -> None:
    with pytest.raises(UsageError, match="KAIZEN_WORKSPACE"):
        run(connect_studio(_settings(workspace=None), transport=studio.transport(), policy=policy))
    assert studio.requests == []
