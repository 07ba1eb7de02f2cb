"""Live acceptance of agents on gateways (opt-in: set KAIZENCTL_ACC_STUDIO_URL, _EMAIL, _PASSWORD).

Against a running Kaizen Studio backend, with three gateway stubs this test starts
on loopback (the server calls them): gateways for development, staging and
production; an agent deployed to development, promoted to staging (at once) and
to production (it waits: apply exits 3); approved through the API; the next
apply completes it; a changed agent moves along the chain in one apply except
where approval stops it; a deployment stopped by hand is restored; an extra
active deployment is stopped; the final plan exits 0. Everything it made is
stopped or deleted at the end. Run it on its own: ``pytest tests/live -p no:xdist``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from kaizenctl.cli import main
from tests.live.test_studio_live import Account
from tests.studio.gateway_stub import GatewayStub, gateway_stub
from tests.studio.harness import (
    DEPLOYMENTS,
    ENVIRONMENTS,
    KEY_VARIABLES,
    KEYS,
    agent_manifest,
    gateways_manifest,
)

URL = os.environ.get("KAIZENCTL_ACC_STUDIO_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(not URL, reason="KAIZENCTL_ACC_STUDIO_URL is not set")


class Platform(Account):
    """The platform's own API, as the people who approve promotions use it."""

    def __init__(self) -> None:
        super().__init__(
            URL,
            os.environ["KAIZENCTL_ACC_STUDIO_EMAIL"],
            os.environ["KAIZENCTL_ACC_STUDIO_PASSWORD"],
        )
        self.log_in()

    def gateways(self, names: set[str]) -> dict[str, dict[str, Any]]:
        return {
            g["name"]: g for g in self.call("GET", "/gateways")["gateways"] if g["name"] in names
        }

    def active(self, gateway_id: str) -> list[dict[str, Any]]:
        return [
            d
            for d in self.call("GET", "/deployments")["deployments"]
            if d["gateway_id"] == gateway_id and d["status"] == "active"
        ]

    def pending(self, gateway_ids: set[str]) -> list[dict[str, Any]]:
        return [
            p
            for p in self.call("GET", "/promotions")
            if p["target_gateway_id"] in gateway_ids
            and p["status"] == "pending"
            and p["requires_approval"]
        ]


@pytest.fixture
def live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Platform, Path, dict[str, GatewayStub], dict[str, str]]]:
    platform = Platform()
    suffix = uuid.uuid4().hex[:6]
    names = {env: f"acc-{env[:4]}-{suffix}" for env in ENVIRONMENTS}
    folder = tmp_path / "manifests"
    folder.mkdir()
    monkeypatch.setenv("KAIZEN_API_URL", URL)
    monkeypatch.setenv("KAIZEN_TOKEN", platform.token())
    monkeypatch.setenv("KAIZEN_WORKSPACE", f"kaizenctl-rollout-{suffix}")
    monkeypatch.setenv("KAIZEN_DIALECT", "studio")
    for name in ("KAIZEN_EMAIL", "KAIZEN_PASSWORD", "KAIZEN_REFRESH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for env in ENVIRONMENTS:
        monkeypatch.setenv(KEY_VARIABLES[env], KEYS[env])
    with ExitStack() as stack:
        stubs = {env: stack.enter_context(gateway_stub()) for env in ENVIRONMENTS}
        gateways = gateways_manifest({env: stub.url for env, stub in stubs.items()})
        for env in ENVIRONMENTS:
            gateways = gateways.replace(
                {"development": "dev-gw", "staging": "staging-gw", "production": "prod-gw"}[env]
                + "}",
                names[env] + "}",
            )
        (folder / "agent.yaml").write_text(agent_manifest(provider=None))
        (folder / "gateways.yaml").write_text(gateways)
        (folder / "deployments.yaml").write_text(
            DEPLOYMENTS.replace("name: helper-", f"name: helper-{suffix}-")
        )
        try:
            yield platform, folder, stubs, names
        finally:
            found = platform.gateways(set(names.values()))
            for gateway in found.values():
                for deployment in platform.active(gateway["id"]):
                    platform.call("POST", f"/deployments/{deployment['id']}/stop")
                platform.call("DELETE", f"/gateways/{gateway['id']}")


def _apply(folder: Path) -> int:
    return main(["apply", "--auto-approve", str(folder)])


def _plan(folder: Path) -> int:
    return main(["plan", "--detailed-exitcode", str(folder)])


def test_the_done_when_flow_on_a_live_server(
    live: tuple[Platform, Path, dict[str, GatewayStub], dict[str, str]],
) -> None:
    platform, folder, stubs, names = live

    # dev deploys, staging is promoted at once, production waits for approval.
    assert _apply(folder) == 3
    gateways = platform.gateways(set(names.values()))
    ids = {env: gateways[names[env]]["id"] for env in ENVIRONMENTS}
    assert len(platform.active(ids["development"])) == 1
    assert len(platform.active(ids["staging"])) == 1
    assert platform.active(ids["production"]) == []
    assert stubs["production"].requests_to("POST") == []
    assert [r.authorization for r in stubs["development"].requests_to("POST")] == [
        f"Bearer {KEYS['development']}"
    ]
    # Apply again before approval: the same promotion waits, no second one, nothing executed.
    assert _apply(folder) == 3
    (waiting,) = platform.pending({ids["production"]})
    assert stubs["production"].requests_to("POST") == []

    # Approved through the API (which carries it out): nothing is left to do.
    platform.call("POST", f"/promotions/{waiting['id']}/approve", json={})
    assert _plan(folder) == 0
    assert len(platform.active(ids["production"])) == 1

    # A changed agent moves along the chain; production waits again.
    (folder / "agent.yaml").write_text(agent_manifest("You help customers, kindly.", provider=None))
    assert _apply(folder) == 3
    staging_body = stubs["staging"].requests_to("POST")[-1].body
    assert staging_body["config"] == "You help customers, kindly."
    assert len(platform.active(ids["development"])) == 1
    assert len(platform.active(ids["staging"])) == 1
    (waiting,) = platform.pending({ids["production"]})
    platform.call("POST", f"/promotions/{waiting['id']}/approve", json={})
    # The approved promotion left the old production deployment running: apply stops it.
    assert len(platform.active(ids["production"])) == 2
    assert _apply(folder) == 0
    assert len(platform.active(ids["production"])) == 1
    assert stubs["production"].requests_to("POST")[-1].body["config"] == (
        "You help customers, kindly."
    )
    assert _plan(folder) == 0

    # Stopped by hand: drift, restored.
    (staging,) = platform.active(ids["staging"])
    platform.call("POST", f"/deployments/{staging['id']}/stop")
    assert _plan(folder) == 2
    assert _apply(folder) == 0
    assert len(platform.active(ids["staging"])) == 1

    # An extra active deployment: stopped.
    (dev,) = platform.active(ids["development"])
    platform.call(
        "POST", "/deployments", json={"agent_id": dev["agent_id"], "gateway_id": ids["development"]}
    )
    assert len(platform.active(ids["development"])) == 2
    assert _plan(folder) == 2
    assert _apply(folder) == 0
    assert len(platform.active(ids["development"])) == 1

    assert _plan(folder) == 0
