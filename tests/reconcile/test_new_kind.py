"""A new named kind needs a spec model, a registry entry, a service and a line in the
dialect's capability table: the stages stay as they are. A test-only ``Widget`` goes
through load, plan, apply, fingerprints and export."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kaizenctl.api.capabilities import CONTRACT_CAPABILITIES, Capabilities
from kaizenctl.api.service import KaizenApi
from kaizenctl.gitops.export import export_documents
from kaizenctl.gitops.fingerprint import live_fingerprints
from kaizenctl.kinds import KINDS, KindInfo, create_order
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.manifests.models import ManifestModel
from kaizenctl.reconcile.apply import execute_plan
from kaizenctl.reconcile.diff import PlanOptions, build_plan
from kaizenctl.reconcile.live import fetch_live
from kaizenctl.reconcile.state import desired_state


class WidgetSpec(ManifestModel):
    colour: str
    size: int = 1


class MemoryService:
    """A named-object service that keeps its objects in a dict."""

    def __init__(self) -> None:
        self.items: dict[str, SimpleNamespace] = {}
        self._ids = itertools.count(1)

    async def list_all(self) -> list[SimpleNamespace]:
        return list(self.items.values())

    async def create(self, fields: dict[str, Any]) -> SimpleNamespace:
        item = SimpleNamespace(id=f"w-{next(self._ids)}", **fields)
        self.items[item.id] = item
        return item

    async def update(self, item_id: str, changes: dict[str, Any]) -> SimpleNamespace:
        vars(self.items[item_id]).update(changes)
        return self.items[item_id]

    async def delete(self, item_id: str) -> None:
        del self.items[item_id]


class NoDeployments:
    async def list_all(self, **filters: object) -> list[object]:
        return []


class WidgetApi:
    """Just enough of a server: no agents, pipelines, policies or deployments; widgets."""

    def __init__(self) -> None:
        self.agents = MemoryService()
        self.pipelines = MemoryService()
        self.policies = MemoryService()
        self.deployments = NoDeployments()
        self.widgets = MemoryService()
        # A server serves the kinds its capability table names (live reads no others).
        self.capabilities: Capabilities = dataclasses.replace(
            CONTRACT_CAPABILITIES, kinds=CONTRACT_CAPABILITIES.kinds | {"Widget"}
        )


@pytest.fixture
def widget_kind(monkeypatch: pytest.MonkeyPatch) -> KindInfo:
    info = KindInfo(
        "Widget",
        WidgetSpec,
        rank=0,
        plural="widgets",
        fields=("colour", "size"),
        service=lambda api: cast(WidgetApi, api).widgets,
    )
    monkeypatch.setitem(KINDS, "Widget", info)
    return info


def _manifest(folder: Path, colour: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "widgets.yaml").write_text(
        "apiVersion: kaizen.io/v1\nkind: Widget\nmetadata:\n  name: gear\n"
        f"spec:\n  colour: {colour}\n"
    )
    return folder


def test_a_registered_kind_is_loaded_planned_applied_fingerprinted_and_exported(
    widget_kind: KindInfo, tmp_path: Path
) -> None:
    server = WidgetApi()
    api = cast(KaizenApi, server)
    assert "Widget" in create_order()

    async def plan_and_apply(colour: str) -> list[str]:
        resources = list(load_manifests([str(_manifest(tmp_path / "m", colour))]).resources)
        live = await fetch_live(api)
        plan = build_plan(desired_state(resources), live)
        result = await execute_plan(api, plan, live)
        assert result.ok, result.outcomes
        return [a.id for a in plan.actions]

    assert asyncio.run(plan_and_apply("red")) == ["create:Widget/gear"]
    [gear] = server.widgets.items.values()
    assert (gear.name, gear.colour, gear.size) == ("gear", "red", 1)
    assert asyncio.run(plan_and_apply("red")) == []  # converged
    assert asyncio.run(plan_and_apply("blue")) == ["update:Widget/gear"]
    assert gear.colour == "blue"

    live = asyncio.run(fetch_live(api))
    assert list(live_fingerprints(live)) == ["Widget/gear"]
    documents, exported = export_documents(live)
    assert exported.warnings == []
    assert documents == {
        Path("widgets/gear.yaml"): {
            "apiVersion": "kaizen.io/v1",
            "kind": "Widget",
            "metadata": {"name": "gear"},
            "spec": {"colour": "blue"},
        }
    }

    # Gone from the manifests: listed as unmanaged, deleted with --prune.
    empty = desired_state([])
    plan = build_plan(empty, live, PlanOptions(prune_unmanaged=True, allow_delete_all=True))
    assert [a.id for a in plan.actions] == ["delete:Widget/gear"]
    assert asyncio.run(execute_plan(api, plan, live)).ok
    assert server.widgets.items == {}
