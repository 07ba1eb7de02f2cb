"""Agents on gateways end to end in CI: agents on the reference server, gateways,
deployments and promotions on the rollout fake, three loopback gateway stubs.

The reconciler sees one connection: the reference server's API with the fake's
gateway services attached (``rollout``), which is how a dialect that deploys
agents onto gateways presents itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from kaizenctl.api.connect import open_api
from kaizenctl.api.gateways import StudioRollout
from kaizenctl.api.service import KaizenApi
from kaizenctl.api.session import ApiSession, TokenState
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.reconcile import (
    ApplyOptions,
    ApplyResult,
    Plan,
    PlanOptions,
    apply_async,
    plan_async,
)
from kaizenctl.server.testing import RunningServer, running_server
from tests.studio.gateway_stub import GatewayStub, gateway_stub
from tests.studio.rollout_fake import RolloutFake, rollout_fake

T = TypeVar("T")
ENVIRONMENTS = ("development", "staging", "production")
KEY_VARIABLES = {env: f"KAIZENCTL_TEST_{env.upper()}_GW_KEY" for env in ENVIRONMENTS}
KEYS = {env: f"{env}-gateway-key-0123" for env in ENVIRONMENTS}
GATEWAY_NAMES = {"development": "dev-gw", "staging": "staging-gw", "production": "prod-gw"}


def agent_manifest(prompt: str = "You help customers.", provider: str | None = "openai") -> str:
    """The agent; a server that stores no provider (the studio dialect) gets none."""
    provider_line = f"  provider: {provider}\n" if provider else ""
    return f"""\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {{name: helper}}
spec:
  system_prompt: {prompt!r}
{provider_line}  model: gpt-4o-mini
"""


def gateways_manifest(urls: dict[str, str]) -> str:
    documents = []
    for env in ENVIRONMENTS:
        documents.append(
            f"""\
apiVersion: kaizen.io/v1
kind: Gateway
metadata: {{name: {GATEWAY_NAMES[env]}}}
spec:
  api_url: {urls[env]}
  environment: {env}
  description: {env} gateway
  api_key: ${{{KEY_VARIABLES[env]}}}
"""
        )
    return "---\n".join(documents)


DEPLOYMENTS = """\
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: helper-dev}
spec: {agent: helper, environment: development, version: latest}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: helper-staging}
spec: {agent: helper, environment: staging, promote_from: development}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: helper-prod}
spec: {agent: helper, environment: production, promote_from: staging}
"""


@dataclass
class Studio:
    server: RunningServer
    fake: RolloutFake
    stubs: dict[str, GatewayStub]
    folder: Path

    @property
    def settings(self) -> ConnectionSettings:
        return ConnectionSettings(
            api_url=self.server.url, email=self.server.email, password=self.server.password
        )

    def write(self, relative: str, text: str) -> None:
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def with_api(self, use: Callable[[KaizenApi], Awaitable[T]]) -> T:
        async def run() -> T:
            async with open_api(self.settings) as api:
                session = ApiSession(self.fake.api_url, tokens=TokenState("fake-token"))
                # How a dialect that deploys agents offers its gateway services.
                setattr(api, "rollout", StudioRollout(session))  # noqa: B010
                try:
                    return await use(api)
                finally:
                    await session.aclose()

        return asyncio.run(run())

    def plan(self, **options: Any) -> Plan:
        resources = list(load_manifests([str(self.folder)]).resources)

        async def run(api: KaizenApi) -> Plan:
            plan, _ = await plan_async(api, resources, PlanOptions(**options))
            return plan

        return self.with_api(run)

    def apply(
        self, plan_options: PlanOptions | None = None, options: ApplyOptions | None = None
    ) -> tuple[Plan, ApplyResult]:
        resources = list(load_manifests([str(self.folder)]).resources)
        return self.with_api(lambda api: apply_async(api, resources, plan_options, options))

    def agent_id(self, name: str = "helper") -> str:
        async def read(api: KaizenApi) -> str:
            return next(a.id for a in await api.agents.list_all() if a.name == name)

        return self.with_api(read)

    def update_agent(self, name: str, changes: dict[str, Any]) -> None:
        async def write(api: KaizenApi) -> None:
            agent = next(a for a in await api.agents.list_all() if a.name == name)
            await api.agents.update(agent.id, changes)

        self.with_api(write)


def _agent_reader(server: RunningServer) -> Callable[[str], dict[str, Any]]:
    """How the fake learns an agent's current config: from the reference server."""
    token: dict[str, str] = {}

    def read(agent_id: str) -> dict[str, Any]:
        if "access" not in token:
            answer = httpx.post(
                f"{server.url}/api/v1/auth/login",
                data={"username": server.email, "password": server.password},
            )
            answer.raise_for_status()
            token["access"] = answer.json()["access_token"]
        answer = httpx.get(
            f"{server.url}/api/v1/agents/{agent_id}",
            headers={"Authorization": f"Bearer {token['access']}"},
        )
        if answer.status_code != 200:
            return {"name": agent_id}
        result: dict[str, Any] = answer.json()
        return result

    return read


@contextmanager
def studio(folder: Path, monkeypatch: Any) -> Iterator[Studio]:
    """Everything running, the manifests written (agent, three gateways, the chain)."""
    for env in ENVIRONMENTS:
        monkeypatch.setenv(KEY_VARIABLES[env], KEYS[env])
    with ExitStack() as stack:
        server = stack.enter_context(running_server())
        stubs = {env: stack.enter_context(gateway_stub()) for env in ENVIRONMENTS}
        fake = stack.enter_context(rollout_fake(_agent_reader(server)))
        result = Studio(server, fake, stubs, folder)
        result.write("agent.yaml", agent_manifest())
        result.write("gateways.yaml", gateways_manifest({e: s.url for e, s in stubs.items()}))
        result.write("deployments.yaml", DEPLOYMENTS)
        yield result
