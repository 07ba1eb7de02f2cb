"""Live acceptance against a running Kaizen Studio backend (opt-in; CI has none).

Set ``KAIZENCTL_ACC_STUDIO_URL``, ``_EMAIL``, ``_PASSWORD`` (and ``_B_URL``, ``_B_EMAIL``,
``_B_PASSWORD`` for a second organization) to run it; otherwise every test is skipped. The
organization must start empty. Each test works in a workspace of its own (made by ``apply``)
and removes what it made. The server allows 10 logins a minute per address, so the suite
logs in once per account and hands the token to every command.

Run it on its own: ``pytest tests/live -p no:xdist``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from kaizenctl.api.connect import connect_studio
from kaizenctl.api.errors import NotFoundError
from kaizenctl.api.records import RECORD_PREFIX
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.cli import main
from tests.paths import ROOT
from tests.studio.unholdable import UNHOLDABLE, UNHOLDABLE_REFUSALS

STUDIO_EXAMPLES = ROOT / "examples" / "studio"
URL = os.environ.get("KAIZENCTL_ACC_STUDIO_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="KAIZENCTL_ACC_STUDIO_URL is not set")
# Refresh the shared access token well before its 900 s run out.
TOKEN_MAX_AGE = 600.0


@dataclass
class Account:
    """One logged-in user: a token shared by every command of the run."""

    url: str
    email: str
    # Never in a repr: pytest prints fixtures' reprs when a test fails.
    password: str = field(repr=False)
    organization_id: str = ""
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    issued_at: float = 0.0

    def log_in(self) -> None:
        answer = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"email": self.email, "password": self.password},
            timeout=60,
        )
        answer.raise_for_status()
        body = answer.json()
        self.organization_id = body["user"]["organization_id"]
        self._keep(body)

    def _keep(self, body: dict[str, Any]) -> None:
        self.access_token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.issued_at = time.monotonic()

    def token(self) -> str:
        if time.monotonic() - self.issued_at > TOKEN_MAX_AGE:
            answer = httpx.post(
                f"{self.url}/api/v1/auth/refresh",
                json={"refresh_token": self.refresh_token},
                timeout=60,
            )
            answer.raise_for_status()
            self._keep(answer.json())
        return self.access_token

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(
            method,
            f"{self.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
            **kwargs,
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None


def _account(prefix: str) -> Account:
    url = os.environ.get(f"{prefix}_URL", "")
    email = os.environ.get(f"{prefix}_EMAIL", "")
    password = os.environ.get(f"{prefix}_PASSWORD", "")
    if not (url and email and password):
        pytest.skip(f"{prefix}_URL / _EMAIL / _PASSWORD are not set")
    account = Account(url.rstrip("/"), email, password)
    account.log_in()
    return account


@pytest.fixture(scope="session")
def account_a() -> Account:
    return _account("KAIZENCTL_ACC_STUDIO")


@pytest.fixture(scope="session")
def account_b() -> Account:
    return _account("KAIZENCTL_ACC_STUDIO_B")


class Workspace:
    """The command line pointed at one fresh workspace of an account."""

    def __init__(self, account: Account, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.account = account
        self.name = name
        self.monkeypatch = monkeypatch

    def run(self, *argv: str) -> int:
        env = {
            "KAIZEN_API_URL": self.account.url,
            "KAIZEN_TOKEN": self.account.token(),
            "KAIZEN_WORKSPACE": self.name,
            "KAIZEN_DIALECT": "auto",
        }
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        for key in ("KAIZEN_EMAIL", "KAIZEN_PASSWORD", "KAIZEN_REFRESH_TOKEN"):
            self.monkeypatch.delenv(key, raising=False)
        return main(list(argv))

    def plan_json(self, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
        capsys.readouterr()
        assert self.run("plan", "--format", "json", *argv) == 0
        plan: dict[str, Any] = json.loads(capsys.readouterr().out)
        return plan

    def workspace_id(self) -> str | None:
        found = [w["id"] for w in self.account.call("GET", "/workspaces") if w["name"] == self.name]
        return found[0] if found else None

    def agents(self) -> list[dict[str, Any]]:
        workspace_id = self.workspace_id()
        if workspace_id is None:
            return []
        return [
            a
            for a in self.account.call(
                "GET", "/agents", params={"workspace_id": workspace_id, "limit": 100}
            )["records"]
            if a["status"] != "archived"
        ]

    def pipelines(self) -> list[dict[str, Any]]:
        workspace_id = self.workspace_id()
        if workspace_id is None:
            return []
        records = self.account.call(
            "GET",
            "/pipelines",
            params={
                "organization_id": self.account.organization_id,
                "workspace_id": workspace_id,
                "limit": 100,
            },
        )["data"]
        return [p for p in records if p["status"] != "archived"]

    def all_policies(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.account.call(
            "GET", "/policies", params={"limit": 1000}
        )["records"]
        return records

    def policies(self) -> list[dict[str, Any]]:
        """The organization's policies, without kaizenctl's own records (sets and locks)."""
        return [p for p in self.all_policies() if not p["name"].startswith(RECORD_PREFIX)]

    def records(self) -> list[dict[str, Any]]:
        return [p for p in self.all_policies() if p["name"].startswith(RECORD_PREFIX)]

    def clean_up(self) -> None:
        for agent in self.agents():
            self.account.call("DELETE", f"/agents/{agent['id']}")
        for pipeline in self.pipelines():
            self.account.call("DELETE", f"/pipelines/{pipeline['id']}")


def _names(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["name"] for r in records)


@pytest.fixture
def workspace_a(account_a: Account, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    workspace = Workspace(account_a, f"kaizenctl-acc-{uuid.uuid4().hex[:8]}", monkeypatch)
    policies_before = {p["id"] for p in workspace.policies()}
    yield workspace
    workspace.clean_up()
    for policy in workspace.policies():
        if policy["id"] not in policies_before:
            workspace.account.call("DELETE", f"/policies/{policy['id']}")


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "studio"
    shutil.copytree(STUDIO_EXAMPLES, folder)
    return folder


def test_done_when_from_an_empty_organization(
    workspace_a: Workspace, manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace_a
    assert ws.workspace_id() is None
    assert ws.all_policies() == [], "the organization must start empty"

    # apply exits 0; plan --detailed-exitcode exits 0, twice
    assert ws.run("apply", "--auto-approve", str(manifests)) == 0
    assert ws.workspace_id() is not None
    # The set's ownership record is an inactive policy (policies are organization-wide, so
    # its name carries the workspace); the lock was released.
    assert [(r["name"], r["status"]) for r in ws.records()] == [
        (f"{RECORD_PREFIX}set.default@{ws.workspace_id()}", "inactive")
    ]
    assert _names(ws.agents()) == ["billing-expert", "summarizer", "support-lead", "tech-support"]
    assert _names(ws.pipelines()) == ["escalations", "support"]
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 0
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 0

    # Both pipelines hold their whole graph, though they share the node ids lead and tech.
    for pipeline in ws.pipelines():
        read = ws.account.call("GET", f"/pipelines/{pipeline['id']}")["data"]
        labels = sorted(n["label"] for n in read["nodes"])
        expected = (
            ["billing", "lead", "summary", "tech"]
            if pipeline["name"] == "support"
            else [
                "lead",
                "summary",
                "tech",
            ]
        )
        assert labels == expected

    # A change through the API: an agent's temperature, and a node removed from a graph.
    billing = next(a for a in ws.agents() if a["name"] == "billing-expert")
    ws.account.call("PUT", f"/agents/{billing['id']}", json={"temperature": 0.9})
    support = next(p for p in ws.pipelines() if p["name"] == "support")
    graph = ws.account.call("GET", f"/pipelines/{support['id']}")["data"]
    tech = next(n for n in graph["nodes"] if n["label"] == "tech")
    nodes = [
        {
            "id": n["id"],
            "label": n["label"],
            "node_type": n["node_type"],
            **({"agent_id": n["agent_id"]} if n["agent_id"] else {}),
            "config": {} if n["config"] in ("None", "") else json.loads(n["config"]),
            "position_x": n["position_x"],
            "position_y": n["position_y"],
        }
        for n in graph["nodes"]
        if n["id"] != tech["id"]
    ]
    connections = [
        {k: c[k] for k in ("source_node_id", "target_node_id", "source_handle", "target_handle")}
        for c in graph["connections"]
        if tech["id"] not in (c["source_node_id"], c["target_node_id"])
    ]
    ws.account.call(
        "PUT",
        f"/pipelines/{support['id']}/graph",
        json={"nodes": nodes, "connections": connections},
    )
    plan = ws.plan_json(capsys, str(manifests))
    changes = [(a["id"], sorted(c["field"] for c in a["changes"])) for a in plan["actions"]]
    assert changes == [
        ("update:Agent/billing-expert", ["temperature"]),
        ("replace-graph:Pipeline/support", ["edges", "edges", "nodes.tech"]),
    ]
    assert ws.run("apply", "--auto-approve", str(manifests)) == 0
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 0

    # --prune removes exactly what left the manifests.
    (manifests / "pipelines" / "escalations.yaml").unlink()
    governance = manifests / "policies" / "governance.yaml"
    governance.write_text(governance.read_text().split("---")[0])
    plan = ws.plan_json(capsys, "--prune", str(manifests))
    assert sorted(a["id"] for a in plan["actions"]) == [
        "delete:Pipeline/escalations",
        "delete:Policy/refunds-need-approval",
    ]
    assert ws.run("apply", "--auto-approve", "--prune", str(manifests)) == 0
    assert _names(ws.pipelines()) == ["support"]
    assert _names(ws.policies()) == ["no-prod-deletes"]
    assert ws.run("plan", "--detailed-exitcode", "--prune", str(manifests)) == 0

    # export -> plan exits 0
    exported = tmp_path / "exported"
    assert ws.run("export", "--out", str(exported)) == 0
    assert ws.run("plan", "--detailed-exitcode", "--prune", str(exported)) == 0


def test_a_set_the_server_cannot_hold_fails_at_plan_with_file_line_and_zero_writes(
    workspace_a: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace_a
    manifest = tmp_path / "unholdable.yaml"
    manifest.write_text(UNHOLDABLE)
    workspaces_before = ws.account.call("GET", "/workspaces")
    policies_before = ws.policies()
    capsys.readouterr()
    assert ws.run("apply", "--auto-approve", str(manifest)) == 1
    err = capsys.readouterr().err
    for line, text in UNHOLDABLE_REFUSALS.items():
        assert re.search(rf"{re.escape(str(manifest))}:{line}:\d+: {re.escape(text)}", err), (
            line,
            err,
        )
    assert ws.account.call("GET", "/workspaces") == workspaces_before
    assert ws.policies() == policies_before
    assert ws.workspace_id() is None


def test_another_organizations_pipelines_are_never_seen(
    workspace_a: Workspace,
    account_b: Account,
    manifests: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = workspace_a
    assert ws.run("apply", "--auto-approve", str(manifests)) == 0
    theirs = Workspace(account_b, ws.name, monkeypatch)
    # Same workspace name in organization B: nothing of A's is there to plan against.
    plan = theirs.plan_json(capsys, str(manifests))
    assert {a["verb"] for a in plan["actions"]} == {"create", "replace-graph"}
    assert plan["unmanaged"] == []
    # B reading A's pipeline by id gets it from the server; kaizenctl refuses it.
    support = next(p for p in ws.pipelines() if p["name"] == "support")
    leaked = account_b.call("GET", f"/pipelines/{support['id']}")["data"]
    assert leaked["organization_id"] == ws.account.organization_id != account_b.organization_id
    assert theirs.workspace_id() is None

    async def read_as_b() -> None:
        settings = ConnectionSettings(
            api_url=account_b.url, token=account_b.token(), dialect="studio", workspace=ws.name
        )
        api = await connect_studio(settings)
        try:
            await api.pipelines.get(support["id"])
        finally:
            await api.aclose()

    with pytest.raises(NotFoundError, match="another organization"):
        asyncio.run(read_as_b())


def test_quirks_live_agent_type_replace_positions_tools_and_duplicate_names(
    workspace_a: Workspace, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace_a
    assert ws.run("apply", "--auto-approve", str(manifests)) == 0

    # Positions moved in the editor survive a graph rewrite that leaves them out.
    support = next(p for p in ws.pipelines() if p["name"] == "support")
    graph = ws.account.call("GET", f"/pipelines/{support['id']}")["data"]
    billing = next(n for n in graph["nodes"] if n["label"] == "billing")
    ws.account.call(
        "PUT",
        f"/pipelines/{support['id']}/nodes/{billing['id']}",
        json={"position_x": 812.5, "position_y": 64.0},
    )
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 0

    # Tools diffed by name; an agent_type change replaces the agent and repoints graphs.
    agents_file = manifests / "agents" / "support.yaml"
    agents_file.write_text(
        agents_file.read_text()
        .replace("[lookup_invoice, lookup_customer]", "[lookup_invoice, refund]")
        .replace("agent_type: task", "agent_type: custom")
    )
    pipelines_file = manifests / "pipelines" / "support.yaml"
    pipelines_file.write_text(
        pipelines_file.read_text().replace("    - {from: tech, to: lead}\n", "")
    )
    old_summarizer = next(a for a in ws.agents() if a["name"] == "summarizer")
    plan = ws.plan_json(capsys, str(manifests))
    assert sorted(a["id"] for a in plan["actions"]) == [
        "create:Agent/summarizer",
        "delete:Agent/summarizer",
        "replace-graph:Pipeline/escalations",
        "replace-graph:Pipeline/support",
        "update:Agent/billing-expert",
    ]
    assert ws.run("apply", "--auto-approve", str(manifests)) == 0
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 0
    summarizer = next(a for a in ws.agents() if a["name"] == "summarizer")
    assert summarizer["id"] != old_summarizer["id"]
    assert summarizer["agent_type"] == "custom"
    graph = ws.account.call("GET", f"/pipelines/{support['id']}")["data"]
    by_label = {n["label"]: n for n in graph["nodes"]}
    assert by_label["summary"]["agent_id"] == summarizer["id"]
    assert (by_label["billing"]["position_x"], by_label["billing"]["position_y"]) == (812.5, 64.0)
    billing_agent = next(a for a in ws.agents() if a["name"] == "billing-expert")
    tools = ws.account.call("GET", f"/agents/{billing_agent['id']}/tools")
    assert sorted(t["name"] for t in tools) == ["lookup_invoice", "refund"]

    # Names are not unique on this server: a second live agent of one name stops the plan.
    ws.account.call(
        "POST",
        "/agents",
        json={
            "workspace_id": ws.workspace_id(),
            "name": "summarizer",
            "agent_type": "chat",
            "model_id": "m",
        },
    )
    capsys.readouterr()
    assert ws.run("plan", str(manifests)) == 1
    assert "more than one Agent with the same name" in capsys.readouterr().err


def test_a_graph_insert_the_server_skips_fails_the_apply_loudly(
    workspace_a: Workspace, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaizenctl.api.studio import node_wire_id

    ws = workspace_a
    assert ws.run("apply", "--auto-approve", str(manifests)) == 0
    support = next(p for p in ws.pipelines() if p["name"] == "support")
    # Take the global node id kaizenctl will use for support's `late`, in a pipeline of
    # another workspace (node ids are one key across pipelines, workspaces, organizations).
    other = ws.account.call("POST", "/workspaces", json={"name": f"{ws.name}-other"})
    squatter = ws.account.call(
        "POST",
        "/pipelines",
        json={
            "organization_id": ws.account.organization_id,
            "workspace_id": other["id"],
            "name": "squatter",
            "pattern": "sequential",
        },
    )["data"]
    ws.account.call(
        "POST",
        f"/pipelines/{squatter['id']}/nodes",
        json={"id": node_wire_id(support["id"], "late"), "node_type": "connector", "label": "x"},
    )
    path = manifests / "pipelines" / "support.yaml"
    path.write_text(
        path.read_text().replace("  nodes:\n", "  nodes:\n    - {id: late, node_type: connector}\n")
    )
    capsys.readouterr()
    assert ws.run("apply", "--auto-approve", str(manifests)) == 1
    out = capsys.readouterr()
    assert "node late was not stored" in out.out + out.err
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 2
    ws.account.call("DELETE", f"/pipelines/{squatter['id']}")


def test_two_first_applies_started_together_exactly_one_writes(
    workspace_a: Workspace, manifests: Path
) -> None:
    import subprocess
    import sys

    ws = workspace_a
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "NO_COLOR": "1",
        "KAIZEN_API_URL": ws.account.url,
        "KAIZEN_TOKEN": ws.account.token(),
        "KAIZEN_WORKSPACE": ws.name,
        "KAIZEN_DIALECT": "auto",
    }
    kaizenctl = Path(sys.executable).with_name("kaizenctl")
    # The workspace does not exist yet: both find it missing, only the lock's holder makes it.
    processes = [
        subprocess.Popen(
            [str(kaizenctl), "apply", "--auto-approve", str(manifests)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    finished = [p.communicate(timeout=300) for p in processes]
    assert sorted(p.returncode for p in processes) == [0, 1], finished
    winner = next(p for p in processes if p.returncode == 0)
    refused = next(
        err.decode() for p, (_, err) in zip(processes, finished, strict=True) if p.returncode
    )
    assert "set 'default' is locked by" in refused
    assert f"(pid {winner.pid}) since 20" in refused
    assert "nothing was changed" in refused

    workspaces = [w for w in ws.account.call("GET", "/workspaces") if w["name"] == ws.name]
    assert len(workspaces) == 1, workspaces
    # No lock left behind, by either; one set record for this workspace; no duplicate.
    assert [r for r in ws.records() if r["name"].startswith(f"{RECORD_PREFIX}lock.")] == []
    assert [r["name"] for r in ws.records() if r["name"].endswith(workspaces[0]["id"])] == [
        f"{RECORD_PREFIX}set.default@{workspaces[0]['id']}"
    ]
    assert _names(ws.agents()) == ["billing-expert", "summarizer", "support-lead", "tech-support"]
    assert _names(ws.pipelines()) == ["escalations", "support"]
    assert ws.run("plan", "--detailed-exitcode", str(manifests)) == 0
