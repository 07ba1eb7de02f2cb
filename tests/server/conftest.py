"""Fixtures for the server contract tests: an authenticated HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kaizenctl.server.testing import RunningServer


def login(server: RunningServer) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/v1/auth/login",
        data={"username": server.email, "password": server.password},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@pytest.fixture
def anon(server: RunningServer) -> Iterator[httpx.Client]:
    """A client of /api/v1 without credentials."""
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=10) as client:
        yield client


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    """A client of /api/v1 logged in as the development user."""
    token = login(server)["access_token"]
    with httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def other_org(server: RunningServer) -> Iterator[httpx.Client]:
    """A client logged in as a user of a second organization."""
    body = {"email": "other@example.com", "password": "other-password", "full_name": "Other"}
    response = httpx.post(f"{server.url}/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    token = response.json()["tokens"]["access_token"]
    with httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


def _creator(
    api: httpx.Client, path: str, defaults: dict[str, Any]
) -> Callable[..., dict[str, Any]]:
    def create(**fields: Any) -> dict[str, Any]:
        response = api.post(path, json={**defaults, **fields})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return create


AGENT = {"name": "agent", "system_prompt": "You help.", "provider": "openai", "model": "gpt-4o"}
PIPELINE = {"name": "pipeline", "pattern": "sequential"}
POLICY = {"name": "policy", "effect": "allow", "resource_type": "agent", "actions": ["read"]}


@pytest.fixture
def make_agent(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    return _creator(api, "/agents", AGENT)


@pytest.fixture
def make_pipeline(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    return _creator(api, "/pipelines", PIPELINE)


@pytest.fixture
def make_policy(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    return _creator(api, "/policies", POLICY)
