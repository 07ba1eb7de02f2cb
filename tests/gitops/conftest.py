"""Fixtures for GitOps flows: a server, a copy of the examples, and the CLI as CI runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from kaizenctl.api.connect import open_api
from kaizenctl.api.service import KaizenApi
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.cli import main
from kaizenctl.server.testing import RunningServer, running_server

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
T = TypeVar("T")


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@dataclass
class GitOps:
    """One server and the ways CI talks to it: the CLI, and the library for setup and checks."""

    server: RunningServer
    capsys: pytest.CaptureFixture[str]

    @property
    def settings(self) -> ConnectionSettings:
        return ConnectionSettings(
            api_url=self.server.url, email=self.server.email, password=self.server.password
        )

    def cli(self, *args: str) -> CliRun:
        self.capsys.readouterr()
        code = main([*args, "--api-url", self.server.url])
        captured = self.capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    def with_api(self, use: Callable[[KaizenApi], Awaitable[T]]) -> T:
        async def run() -> T:
            async with open_api(self.settings) as api:
                return await use(api)

        return asyncio.run(run())

    def writes(self) -> list[str]:
        """Every write request the server saw since the log was last cleared."""
        return [
            f"{entry.method} {entry.path}"
            for entry in self.server.request_log()
            if entry.method in WRITE_METHODS and "/auth/" not in entry.path
        ]


@pytest.fixture
def gitops(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[GitOps]:
    """A fresh server with quick deployments, and its credentials in the environment."""
    with running_server(deploy_step_s=0.01) as live:
        monkeypatch.setenv("KAIZEN_EMAIL", live.email)
        monkeypatch.setenv("KAIZEN_PASSWORD", live.password)
        for name in ("KAIZEN_TOKEN", "KAIZEN_REFRESH_TOKEN", "KAIZEN_API_URL", "NO_COLOR"):
            monkeypatch.delenv(name, raising=False)
        yield GitOps(live, capsys)
