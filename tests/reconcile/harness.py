"""The harness of the end-to-end reconciler tests: a server, a manifest folder, library calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from kaizenctl.api.connect import open_api
from kaizenctl.api.service import KaizenApi
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.manifests.models import Resource
from kaizenctl.reconcile import (
    ApplyOptions,
    ApplyResult,
    Plan,
    PlanOptions,
    apply_async,
    plan_async,
)
from kaizenctl.server.testing import RunningServer

T = TypeVar("T")


class Kaizen:
    """One server, one manifest folder, and the library calls a test needs."""

    def __init__(self, server: RunningServer, folder: Path) -> None:
        self.server = server
        self.folder = folder
        self.settings = ConnectionSettings(
            api_url=server.url, email=server.email, password=server.password
        )

    def resources(self) -> list[Resource]:
        return list(load_manifests([str(self.folder)]).resources)

    def with_api(self, use: Callable[[KaizenApi], Awaitable[T]]) -> T:
        async def run() -> T:
            async with open_api(self.settings) as api:
                return await use(api)

        return asyncio.run(run())

    def plan(self, **options: object) -> Plan:
        resources = self.resources()

        async def run(api: KaizenApi) -> Plan:
            plan, _ = await plan_async(api, resources, PlanOptions(**options))  # type: ignore[arg-type]
            return plan

        return self.with_api(run)

    def apply(
        self, plan_options: PlanOptions | None = None, options: ApplyOptions | None = None
    ) -> tuple[Plan, ApplyResult]:
        resources = self.resources()
        return self.with_api(lambda api: apply_async(api, resources, plan_options, options))

    def write(self, relative: str, text: str) -> None:
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.folder / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))
