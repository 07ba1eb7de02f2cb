"""Auth endpoints: login, register, refresh with rotation, logout, users/me, TTL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kaizenctl.server.testing import ManualClock, RunningServer


def login(server: RunningServer) -> dict[str, Any]:
    form = {"username": server.email, "password": server.password}
    response = httpx.post(f"{server.url}/api/v1/auth/login", data=form)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def test_login_returns_bearer_tokens(server: RunningServer, anon: httpx.Client) -> None:
    response = anon.post(
        "/auth/login", data={"username": server.email, "password": server.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert body["refresh_token"]


def test_login_email_is_case_insensitive(server: RunningServer, anon: httpx.Client) -> None:
    form = {"username": server.email.upper(), "password": server.password}
    assert anon.post("/auth/login", data=form).status_code == 200


def test_bad_credentials_401(server: RunningServer, anon: httpx.Client) -> None:
    wrong = anon.post("/auth/login", data={"username": server.email, "password": "nope-nope"})
    assert wrong.status_code == 401
    assert isinstance(wrong.json()["detail"], str)
    unknown = anon.post("/auth/login", data={"username": "x@y.z", "password": "whatever1"})
    assert unknown.status_code == 401


def test_login_is_form_encoded_only(server: RunningServer, anon: httpx.Client) -> None:
    response = anon.post(
        "/auth/login", json={"username": server.email, "password": server.password}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_register_creates_user_and_org(anon: httpx.Client, api: httpx.Client) -> None:
    body = {"email": "New@Example.com", "password": "password1", "full_name": "New User"}
    response = anon.post("/auth/register", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["user"]["email"] == "new@example.com"
    assert created["user"]["full_name"] == "New User"
    assert created["tokens"]["access_token"]
    mine = api.get("/users/me").json()
    assert created["user"]["organization_id"] != mine["organization_id"]
    token = created["tokens"]["access_token"]
    me = anon.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["id"] == created["user"]["id"]


def test_register_duplicate_email_409(server: RunningServer, anon: httpx.Client) -> None:
    body = {"email": server.email.upper(), "password": "password1", "full_name": "Dup"}
    assert anon.post("/auth/register", json=body).status_code == 409


def test_register_validation(anon: httpx.Client) -> None:
    short = {"email": "a@b.c", "password": "short", "full_name": "A"}
    assert anon.post("/auth/register", json=short).status_code == 422
    bad_email = {"email": "not-an-email", "password": "password1", "full_name": "A"}
    assert anon.post("/auth/register", json=bad_email).status_code == 422
    extra = {"email": "a@b.c", "password": "password1", "full_name": "A", "role": "admin"}
    assert anon.post("/auth/register", json=extra).status_code == 422


def test_refresh_rotates(server: RunningServer, anon: httpx.Client) -> None:
    first = login(server)["refresh_token"]
    response = anon.post("/auth/refresh", json={"refresh_token": first})
    assert response.status_code == 200
    second = response.json()["refresh_token"]
    assert second != first
    assert response.json()["access_token"]
    # The used token is dead; only that one: the new one still works.
    assert anon.post("/auth/refresh", json={"refresh_token": first}).status_code == 401
    assert anon.post("/auth/refresh", json={"refresh_token": second}).status_code == 200
    assert anon.post("/auth/refresh", json={"refresh_token": "garbage"}).status_code == 401


def test_logout_revokes_refresh_token(server: RunningServer, anon: httpx.Client) -> None:
    tokens = login(server)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = anon.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert response.status_code == 204
    assert (
        anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code
        == 401
    )
    # Access tokens live until they expire.
    assert anon.get("/users/me", headers=headers).status_code == 200


def test_logout_without_body_revokes_all(server: RunningServer, anon: httpx.Client) -> None:
    tokens = login(server)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert anon.post("/auth/logout", headers=headers).status_code == 204
    assert (
        anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code
        == 401
    )


def test_logout_needs_auth(anon: httpx.Client) -> None:
    assert anon.post("/auth/logout").status_code == 401


def test_users_me(server: RunningServer, api: httpx.Client) -> None:
    me = api.get("/users/me").json()
    assert me["email"] == server.email
    assert set(me) >= {"id", "full_name", "organization_id", "role", "is_active", "created_at"}


def test_missing_or_bad_token_401(anon: httpx.Client) -> None:
    assert anon.get("/agents").status_code == 401
    response = anon.get("/agents", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or expired access token"}


@pytest.mark.manual_clock
def test_access_token_expires_after_ttl(
    server: RunningServer, server_clock: ManualClock, anon: httpx.Client
) -> None:
    server.set_faults(access_token_ttl_s=0.3)
    tokens = login(server)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    server_clock.advance(0.29)
    assert anon.get("/users/me", headers=headers).status_code == 200
    server_clock.advance(0.02)
    assert anon.get("/users/me", headers=headers).status_code == 401
    refreshed = anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
