"""Helpers for the API tests: a fake clock, settings builders, running a scenario."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from kaizenctl.api.connect import connect_v1
from kaizenctl.api.contract_v1 import ContractV1Api
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from tests.api.api_fake import EMAIL, PASSWORD, FakeKaizen

T = TypeVar("T")


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still let other tasks run


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def token_settings(**overrides: Any) -> ConnectionSettings:
    values: dict[str, Any] = {
        "api_url": "http://127.0.0.1:9",
        "token": "initial-access-token",
        "refresh_token": "initial-refresh-token",
    }
    values.update(overrides)
    return ConnectionSettings(**values)


def password_settings(**overrides: Any) -> ConnectionSettings:
    values: dict[str, Any] = {"api_url": "http://127.0.0.1:9", "email": EMAIL, "password": PASSWORD}
    values.update(overrides)
    return ConnectionSettings(**values)


Scenario = Callable[[ContractV1Api], Awaitable[T]]


def with_api(
    fake: FakeKaizen,
    policy: RetryPolicy,
    scenario: Callable[[ContractV1Api], Awaitable[T]],
    settings: ConnectionSettings | None = None,
) -> T:
    """Connect to ``fake``, run ``scenario``, close."""

    async def main() -> T:
        api = await connect_v1(
            settings or token_settings(), transport=fake.transport(), policy=policy
        )
        try:
            return await scenario(api)
        finally:
            await api.aclose()

    return run(main())
