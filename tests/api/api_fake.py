"""An in-memory CONTRACT.md server as an ``httpx.MockTransport`` handler, with faults on cue.

Just enough of the contract for the API layer's tests. Faults are queued per
(method, path) and fire in order:

* ``answer(status, headers, detail)`` — answer instead of processing;
* ``reset_before()`` — the connection drops before the server sees the request;
* ``reset_after_commit()`` — the server processes the request, then the answer is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

PREFIX = "/api/v1"
EMAIL = "ops@example.com"
PASSWORD = "correct-horse-battery"
# The fields of a minimal valid agent create.
AGENT = {"name": "triage", "system_prompt": "p", "provider": "openai", "model": "m"}


@dataclass
class Fault:
    kind: str  # "answer" | "reset_before" | "reset_after_commit" | "connect_error"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    detail: Any = None


class FakeKaizen:
    def __init__(self, *, page_size_cap: int = 100, settle_after_gets: int = 2) -> None:
        self.page_size_cap = page_size_cap
        self.settle_after_gets = settle_after_gets
        self.ids = itertools.count(1)
        self.clock = itertools.count(1)
        self.agents: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.deployment_gets: dict[str, int] = {}
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.requests: list[httpx.Request] = []
        self.refresh_calls = 0
        self.login_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.access_tokens.add("initial-access-token")
        self.refresh_tokens.add("initial-refresh-token")

    # ---- test controls ----
    def add_fault(self, method: str, path: str, fault: Fault, times: int = 1) -> None:
        self.faults.setdefault((method, PREFIX + path), []).extend([fault] * times)

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == PREFIX + path)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ---- the server ----
    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            queue = self.faults.get((request.method, request.url.path))
            fault = queue.pop(0) if queue else None
            if fault is not None:
                if fault.kind == "answer":
                    body = {"detail": fault.detail or "fault"}
                    return httpx.Response(fault.status, json=body, headers=fault.headers)
                if fault.kind == "reset_before":
                    raise httpx.ReadError("connection reset by peer", request=request)
                if fault.kind == "connect_error":
                    raise httpx.ConnectError("connection refused", request=request)
            response = self._route(request)
            if fault is not None and fault.kind == "reset_after_commit":
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            return response
        finally:
            self.in_flight -= 1

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(PREFIX)
        parts = path.strip("/").split("/")
        if parts[0] == "auth":
            return self._auth(parts[1], request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.access_tokens:
            return _error(401, "Could not validate credentials")
        if parts == ["users", "me"]:
            return httpx.Response(200, json=_user())
        store = {"agents": self.agents, "pipelines": self.pipelines, "policies": self.policies}
        if parts[0] in store:
            return self._named(store[parts[0]], parts, request)
        if parts[0] == "deployments":
            return self._deployments(parts, request)
        return _error(404, "Not Found")

    def _auth(self, action: str, request: httpx.Request) -> httpx.Response:
        if action == "login":
            self.login_calls += 1
            form = parse_qs(request.content.decode())
            if form.get("username") != [EMAIL] or form.get("password") != [PASSWORD]:
                return _error(401, "Incorrect email or password")
            return httpx.Response(200, json=self._issue())
        if action == "refresh":
            self.refresh_calls += 1
            token = json.loads(request.content)["refresh_token"]
            if token not in self.refresh_tokens:
                return _error(401, "Invalid refresh token")
            self.refresh_tokens.discard(token)  # rotation: the old one dies
            return httpx.Response(200, json=self._issue())
        if action == "logout":
            body = json.loads(request.content) if request.content else {}
            self.refresh_tokens.discard(body.get("refresh_token", ""))
            return httpx.Response(204)
        return _error(404, "Not Found")

    def _issue(self) -> dict[str, str]:
        n = next(self.ids)
        access, refresh = f"access-token-{n:06d}", f"refresh-token-{n:06d}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer"}

    def _page(self, items: list[dict[str, Any]], request: httpx.Request) -> httpx.Response:
        query = request.url.params
        page_size = int(query.get("page_size", "20"))
        if page_size > 100:
            return _error(422, [{"loc": ["query", "page_size"], "msg": "at most 100"}])
        page_size = min(page_size, self.page_size_cap)
        page = int(query.get("page", "1"))
        total = len(items)
        chunk = items[(page - 1) * page_size : page * page_size]
        return httpx.Response(
            200,
            json={
                "items": chunk,
                "total": total,
                "page": page,
                "page_size": page_size,
                "total_pages": math.ceil(total / page_size),
            },
        )

    def _named(
        self, store: dict[str, dict[str, Any]], parts: list[str], request: httpx.Request
    ) -> httpx.Response:
        method = request.method
        if len(parts) == 1 and method == "GET":
            search = request.url.params.get("search", "").lower()
            items = [o for o in store.values() if search in o["name"].lower()]
            return self._page(items, request)
        if len(parts) == 1 and method == "POST":
            body = json.loads(request.content)
            if any(o["name"] == body["name"] for o in store.values()):
                return _error(409, f"name {body['name']!r} already exists")
            obj = {"id": f"{parts[0][:2]}-{next(self.ids)}", **body, "created_at": self._now()}
            obj.setdefault("system_prompt", "")
            obj.setdefault("provider", "openai")
            obj.setdefault("model", "m")
            obj.setdefault("pattern", "sequential")
            obj.setdefault("version", 1)
            obj.setdefault("effect", "allow")
            obj.setdefault("resource_type", "agent")
            obj.setdefault("actions", ["read"])
            store[obj["id"]] = obj
            return httpx.Response(201, json=obj)
        found = store.get(parts[1])
        if found is None:
            return _error(404, "Not found")
        if len(parts) == 3 and parts[2] == "versions":
            versions = self.versions.setdefault(found["id"], [])
            if method == "POST":
                version = {
                    "id": f"v-{next(self.ids)}",
                    "agent_id": found["id"],
                    "version": len(versions) + 1,
                    "snapshot": dict(found),
                }
                versions.append(version)
                return httpx.Response(201, json=version)
            return httpx.Response(200, json=list(reversed(versions)))
        if method == "GET":
            return httpx.Response(200, json=found)
        if method == "PATCH":
            found.update(json.loads(request.content))
            return httpx.Response(200, json=found)
        if method == "DELETE":
            del store[found["id"]]
            return httpx.Response(204)
        return _error(405, "Method Not Allowed")

    def seed_agents(self, count: int) -> None:
        """Agents agent-000 … that exist before a test starts."""
        for n in range(count):
            self.agents[f"a-{n:03d}"] = {
                "id": f"a-{n:03d}",
                "name": f"agent-{n:03d}",
                "system_prompt": "p",
                "provider": "openai",
                "model": "m",
            }

    def _now(self) -> str:
        return f"2025-01-01T00:00:{next(self.clock):02d}Z"

    def _deployments(self, parts: list[str], request: httpx.Request) -> httpx.Response:
        method = request.method
        if len(parts) == 1 and method == "GET":
            query = request.url.params
            items = [
                d
                for d in self.deployments.values()
                if all(d[k] == query[k] for k in ("pipeline_id", "environment") if k in query)
            ]
            return self._page(items, request)
        if len(parts) == 1 and method == "POST":
            body = json.loads(request.content)
            pipeline = self.pipelines[body["pipeline_id"]]
            return self._new_deployment(
                body["pipeline_id"], body["environment"], pipeline["version"]
            )
        deployment = self.deployments.get(parts[1])
        if deployment is None:
            return _error(404, "Not found")
        if len(parts) == 3 and parts[2] == "promote":
            target = json.loads(request.content)["target_environment"]
            return self._new_deployment(
                deployment["pipeline_id"], target, deployment["pipeline_version"]
            )
        if len(parts) == 3 and parts[2] == "rollback":
            return self._new_deployment(deployment["pipeline_id"], deployment["environment"], 1)
        if len(parts) == 3 and parts[2] == "logs":
            return httpx.Response(200, json=[{"timestamp": "t", "level": "info", "message": "ok"}])
        if method == "GET":
            gets = self.deployment_gets[deployment["id"]] = (
                self.deployment_gets.get(deployment["id"], 0) + 1
            )
            if gets >= self.settle_after_gets and deployment["status"] == "pending":
                deployment["status"] = "active"
            return httpx.Response(200, json=deployment)
        if method == "DELETE":
            deployment["status"] = "stopped"
            return httpx.Response(204)
        return _error(405, "Method Not Allowed")

    def _new_deployment(self, pipeline_id: str, environment: str, version: int) -> httpx.Response:
        deployment: dict[str, Any] = {
            "id": f"dep-{next(self.ids)}",
            "pipeline_id": pipeline_id,
            "pipeline_version": version,
            "environment": environment,
            "status": "pending",
            "created_at": self._now(),
        }
        self.deployments[deployment["id"]] = deployment
        return httpx.Response(201, json=deployment)


def _user() -> dict[str, Any]:
    return {"id": "u-1", "email": EMAIL, "organization_id": "org-1", "full_name": "Ops"}


def _error(status: int, detail: Any) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail})


Handler = Callable[[httpx.Request], httpx.Response]
