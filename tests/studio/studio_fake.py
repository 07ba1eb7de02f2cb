"""A stand-in for the shipped Kaizen Studio backend, built from its recorded exchanges.

Every shape and quirk here is one recorded in ``tests/studio/fixtures`` (copied
from the upstream probe): the error envelope, ``limit``/``offset`` lists whose
``total`` is the page length, soft-deleted agents and pipelines that stay listed,
float32 temperatures, JSON-text configs with ``"None"`` for unset, graph node ids
that are global across pipelines (a taken id is skipped without a word), graph
writes that answer 200 whatever they stored, policies holding one action and
answering their conditions as text on create, pipelines of other organizations let
through, 403 for other organizations' agents and policies.

It serves the same handler two ways: ``transport()`` (``httpx.MockTransport``, for
faults a real socket cannot produce on cue) and ``serving()`` (uvicorn on
127.0.0.1, for the command line over real HTTP).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import uvicorn

from kaizenctl.api.connect import connect_studio
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.api.studio import StudioApi
from kaizenctl.server.listen import bind
from tests.api.api_helpers import run

PREFIX = "/api/v1"
EMAIL = "ops@example.com"
PASSWORD = "correct-horse-battery"
T = TypeVar("T")
ORG = "36be9f4a-dc6d-42a4-a346-3c26a1e682a1"
OTHER_ORG = "99999999-dc6d-42a4-a346-3c26a1e682a1"
NAME_CHARACTERS = re.compile(r"^[a-z_*]+$")
PATTERNS = {
    "sequential": "Agents execute in sequence, output passes to next",
    "parallel": "Agents execute in parallel, results merged",
    "router": "Route to agent based on condition",
    "supervisor": "Supervisor delegates to worker agents",
    "ensemble": "Multiple agents vote, aggregate results",
}


def widened_float32(value: float) -> float:
    """What the server reads back for a stored temperature: 0.3 -> 0.30000001192092896."""
    result: float = struct.unpack("<f", struct.pack("<f", float(value)))[0]
    return result


LOCK_RECORD_PREFIX = "kaizenctl.lock."
RECORD_RESOURCE_TYPE = "kaizenctl_record"


@dataclass(frozen=True)
class Logged:
    """One request as the server saw it: who sent it (the bearer token) and, for a create,
    the name it asked for."""

    method: str
    path: str
    token: str
    name: str = ""

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE") and not self.path.startswith(
            PREFIX + "/auth/"
        )


def _now() -> str:
    return "2026-12-01T19:30:09.105771"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, details: Any = None) -> Reply:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return Reply(status, {"error": body})


def missing(*fields: str) -> Reply:
    return error(
        422,
        "VALIDATION_ERROR",
        "Request validation failed",
        {
            "errors": [
                {"field": f"body.{name}", "message": "Field required", "type": "missing"}
                for name in fields
            ]
        },
    )


@dataclass
class Fault:
    """``answer``: reply instead of handling; ``drop_after``: handle, then lose the answer;
    ``reset``: the connection is reset before the server sees the request."""

    kind: str
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def use_studio_api(
    transport: httpx.AsyncBaseTransport,
    policy: RetryPolicy,
    use: Callable[[StudioApi], Awaitable[T]],
    settings: ConnectionSettings,
) -> T:
    """``use``'s result with a studio API connected over ``transport``, then closed (bounded)."""

    async def go() -> T:
        api = await connect_studio(settings, transport=transport, policy=policy)
        try:
            return await use(api)
        finally:
            await api.aclose()

    return run(go())


class FakeStudio:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.users: dict[str, dict[str, Any]] = {}
        self.access: dict[str, str] = {}  # token -> user id
        self.refresh: dict[str, str] = {}
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.tools: dict[str, list[dict[str, Any]]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        # The server's one table of nodes: ids are global across pipelines and organizations.
        self.nodes: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.requests: list[tuple[str, str]] = []
        self.log: list[Logged] = []
        # Races on cue (served over loopback only): the first N requests of a kind wait for
        # each other, then go on together (at most ``hold_timeout_s``). "claims": a caller's
        # list of kaizenctl's records after it created a lock record, so concurrent applies
        # all list while every claim exists. "workspaces": GET /workspaces, so concurrent
        # first applies all find the workspace missing.
        self.barriers: dict[str, int] = {}
        self.hold_timeout_s = 30.0
        self.lock_records_created = 0
        self.held_timed_out = 0
        self.lock_claimants: set[str] = set()
        self._arrived: dict[str, int] = {}
        self._barrier_moved: asyncio.Condition | None = None
        self.logins = 0
        # Node ids whose insert fails inside the server (and is skipped, as it does).
        self.failing_node_ids: set[str] = set()
        self.lock = threading.Lock()
        self.add_user(EMAIL, PASSWORD, ORG)

    # ---- set-up helpers for tests ------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=next(self.ids)))

    def add_user(self, email: str, password: str, organization_id: str) -> str:
        user_id = self.new_id()
        self.users[user_id] = {
            "id": user_id,
            "email": email,
            "password": password,
            "name": email.split("@")[0],
            "organization_id": organization_id,
            "role": "org_owner",
        }
        return user_id

    def token_for(self, email: str) -> str:
        user = next(u for u in self.users.values() if u["email"] == email)
        token = f"access-{self.new_id()}"
        self.access[token] = user["id"]
        return token

    def add_fault(self, method: str, path: str, fault: Fault, times: int = 1) -> None:
        self.faults.setdefault((method, path), []).extend([fault] * times)

    def count(self, method: str, prefix: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(PREFIX + prefix))

    def writes(self) -> list[tuple[str, str]]:
        return [
            (m, p)
            for m, p in self.requests
            if m in ("POST", "PUT", "PATCH", "DELETE") and not p.startswith(PREFIX + "/auth/")
        ]

    def lock_records(self) -> list[dict[str, Any]]:
        return [p for p in self.policies.values() if p["name"].startswith(LOCK_RECORD_PREFIX)]

    @staticmethod
    def _is_lock_create(method: str, path: str, body: Any) -> bool:
        return (
            method == "POST"
            and path == f"{PREFIX}/policies"
            and isinstance(body, dict)
            and str(body.get("name", "")).startswith(LOCK_RECORD_PREFIX)
        )

    def live_agents(self) -> list[dict[str, Any]]:
        return [a for a in self.agents.values() if a["status"] != "archived"]

    def live_pipelines(self) -> list[dict[str, Any]]:
        return [p for p in self.pipelines.values() if p["status"] != "archived"]

    def agent_named(self, name: str) -> dict[str, Any]:
        return next(a for a in self.live_agents() if a["name"] == name)

    def pipeline_named(self, name: str) -> dict[str, Any]:
        return next(p for p in self.live_pipelines() if p["name"] == name)

    def graph_of(self, pipeline_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        nodes = [n for n in self.nodes.values() if n["pipeline_id"] == pipeline_id]
        edges = [c for c in self.connections.values() if c["pipeline_id"] == pipeline_id]
        # Never the write order (the real server's order is its own).
        return list(reversed(nodes)), list(reversed(edges))

    # ---- serving ---------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_httpx)

    def use_api(self, policy: RetryPolicy, use: Callable[[StudioApi], Awaitable[T]]) -> T:
        """``use``'s result with a studio API logged in to this fake (in process), then closed."""
        settings = ConnectionSettings(
            api_url="http://127.0.0.1:9",
            email=EMAIL,
            password=PASSWORD,
            dialect="studio",
            workspace="w",
        )
        return use_studio_api(self.transport(), policy, use, settings)

    def handle_httpx(self, request: httpx.Request) -> httpx.Response:
        body: Any = None
        if request.content:
            try:
                body = json.loads(request.content)
            except ValueError:
                body = request.content.decode()
        key = (request.method, request.url.path)
        fault = self._next_fault(key)
        if fault is not None and fault.kind == "reset":
            raise httpx.ReadError("connection reset by peer", request=request)
        reply = self.handle(
            request.method,
            request.url.path,
            {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()},
            request.headers.get("authorization", ""),
            request.headers.get("content-type", ""),
            body,
            fault,
        )
        if fault is not None and fault.kind == "drop_after":
            raise httpx.ReadError("connection reset after the request", request=request)
        return httpx.Response(reply.status, json=reply.body, headers=reply.headers)

    def _next_fault(self, key: tuple[str, str]) -> Fault | None:
        queue = self.faults.get(key)
        return queue.pop(0) if queue else None

    @contextmanager
    def serving(self) -> Iterator[str]:
        """Serve on 127.0.0.1 (a free port) and yield the base URL."""
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi, log_level="warning", access_log=False, lifespan="off", interface="asgi3"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the fake studio server did not start")
                time.sleep(0.01)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode()
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        if self._barrier_moved is None:
            self._barrier_moved = asyncio.Condition()  # on the server's own loop
        barrier = self._barrier_for(scope["method"], scope["path"], query, headers)
        if barrier is not None:
            await self._wait_at(barrier)
        fault = self._next_fault((scope["method"], scope["path"]))
        reply = self.handle(
            scope["method"],
            scope["path"],
            query,
            headers.get("authorization", ""),
            headers.get("content-type", ""),
            body,
            fault,
        )
        if self._is_lock_create(scope["method"], scope["path"], body) and reply.status == 201:
            self.lock_claimants.add(headers.get("authorization", ""))
        payload = b"" if reply.status == 204 else json.dumps(reply.body).encode()
        response_headers = [(b"content-type", b"application/json")]
        response_headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": payload})

    def _barrier_for(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> str | None:
        if method != "GET":
            return None
        if path == f"{PREFIX}/workspaces":
            kind = "workspaces"
        elif (
            path == f"{PREFIX}/policies"
            and query.get("resource_type") == RECORD_RESOURCE_TYPE
            and headers.get("authorization", "") in self.lock_claimants
        ):
            kind = "claims"
        else:
            return None
        if self._arrived.get(kind, 0) >= self.barriers.get(kind, 0):
            return None  # no barrier, or it opened already
        return kind

    async def _wait_at(self, kind: str) -> None:
        assert self._barrier_moved is not None
        wanted = self.barriers[kind]
        async with self._barrier_moved:
            self._arrived[kind] = self._arrived.get(kind, 0) + 1
            self._barrier_moved.notify_all()
            try:
                await asyncio.wait_for(
                    self._barrier_moved.wait_for(lambda: self._arrived[kind] >= wanted),
                    self.hold_timeout_s,
                )
            except TimeoutError:
                self.held_timed_out += 1

    # ---- the API ---------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        authorization: str,
        content_type: str,
        body: Any,
        fault: Fault | None = None,
    ) -> Reply:
        with self.lock:
            self.requests.append((method, path))
            name = body.get("name", "") if isinstance(body, dict) and method == "POST" else ""
            token = authorization.removeprefix("Bearer ")
            self.log.append(Logged(method, path, token, str(name)))
            if fault is not None and fault.kind == "answer":
                return Reply(fault.status, fault.body, fault.headers)
            if path.endswith("/") and path != "/":
                return Reply(307, None, {"location": path.rstrip("/")})
            if not path.startswith(PREFIX):
                return error(404, "NOT_FOUND", "Not Found")
            route = path[len(PREFIX) :]
            if route == "/pipelines/patterns" and method == "GET":
                return Reply(200, {"data": PATTERNS})
            if route.startswith("/auth/"):
                return self._auth(method, route, content_type, body)
            user = self._user(authorization)
            if user is None:
                return error(401, "UNAUTHORIZED", "Invalid or expired token")
            parts = [p for p in route.split("/") if p]
            return self._route(method, parts, query, body, user)

    def _user(self, authorization: str) -> dict[str, Any] | None:
        if not authorization.startswith("Bearer "):
            return None
        user_id = self.access.get(authorization[len("Bearer ") :])
        return self.users.get(user_id) if user_id else None

    def _public_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in user.items() if k != "password"}

    def _auth(self, method: str, route: str, content_type: str, body: Any) -> Reply:
        if route == "/auth/login" and method == "POST":
            self.logins += 1
            if not isinstance(body, dict):
                return error(
                    422,
                    "VALIDATION_ERROR",
                    "Request validation failed",
                    {
                        "errors": [
                            {
                                "field": "body",
                                "message": "Input should be a valid dictionary",
                                "type": "dict_type",
                            }
                        ]
                    },
                )
            for user in self.users.values():
                if user["email"] == body.get("email") and user["password"] == body.get("password"):
                    tokens = self._issue(user["id"])
                    return Reply(200, {"user": self._public_user(user), **tokens})
            return error(401, "UNAUTHORIZED", "Invalid email or password")
        if route == "/auth/refresh" and method == "POST":
            token = body.get("refresh_token") if isinstance(body, dict) else None
            user_id = self.refresh.pop(token, None) if isinstance(token, str) else None
            if user_id is None:
                return error(401, "UNAUTHORIZED", "Invalid or expired refresh token")
            return Reply(200, self._issue(user_id))
        return error(404, "NOT_FOUND", "Not Found")

    def _issue(self, user_id: str) -> dict[str, Any]:
        access, refresh = f"access-{self.new_id()}", f"refresh-{self.new_id()}"
        self.access[access] = user_id
        self.refresh[refresh] = user_id
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": 900,
        }

    def _route(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        body: Any,
        user: dict[str, Any],
    ) -> Reply:
        head = parts[0] if parts else ""
        if parts == ["users", "me"] and method == "GET":
            return Reply(200, self._public_user(user))
        if head == "workspaces":
            return self._workspaces(method, parts, body, user)
        if head == "agents":
            return self._agents(method, parts, query, body, user)
        if head == "pipelines":
            return self._pipelines(method, parts, query, body, user)
        if head == "policies":
            return self._policies(method, parts, query, body, user)
        # Agents on gateways are tests/studio/rollout_fake.py's; here there are none.
        if parts == ["gateways"] and method == "GET":
            return Reply(200, {"gateways": []})
        if parts == ["deployments"] and method == "GET":
            return Reply(200, {"deployments": []})
        if parts == ["promotions"] and method == "GET":
            return Reply(200, [])
        return error(404, "NOT_FOUND", "Not Found")

    def _paged(
        self, records: list[dict[str, Any]], query: dict[str, str], key: str, cap: int | None
    ) -> Reply:
        try:
            limit = int(query.get("limit", "50" if cap else "100"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            return error(422, "VALIDATION_ERROR", "Request validation failed")
        if cap is not None and not 1 <= limit <= cap:
            return error(
                422,
                "VALIDATION_ERROR",
                "Request validation failed",
                {"errors": [{"field": "query.limit", "message": "out of range", "type": "x"}]},
            )
        if limit < 0:
            return error(500, "INTERNAL_ERROR", "LIMIT must not be negative")
        page = records[offset : offset + limit]
        # `total` is this page's length, not the list's.
        return Reply(200, {key: page, "total": len(page)})

    # ---- workspaces ------------------------------------------------------------------

    def _workspaces(self, method: str, parts: list[str], body: Any, user: dict[str, Any]) -> Reply:
        if len(parts) == 1 and method == "GET":
            return Reply(
                200,
                [
                    {
                        "id": w["id"],
                        "name": w["name"],
                        "workspaceType": "permanent",
                        "isArchived": w.get("isArchived", False),
                    }
                    for w in self.workspaces.values()
                    if w["organizationId"] == user["organization_id"] and not w.get("isArchived")
                ],
            )
        if len(parts) == 1 and method == "POST":
            if not isinstance(body, dict) or not body.get("name"):
                return missing("name")
            workspace_id = self.new_id()
            workspace = {
                "id": workspace_id,
                "name": body["name"],
                "organizationId": user["organization_id"],
                "workspaceType": "permanent",
                "isArchived": False,
            }
            self.workspaces[workspace_id] = workspace
            return Reply(201, workspace)
        return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")

    # ---- agents ----------------------------------------------------------------------

    def _agent_view(self, agent: dict[str, Any], *, full: bool) -> dict[str, Any]:
        view = dict(agent)
        if full:
            view["contexts"] = []
            view["tools"] = [dict(t) for t in self.tools.get(agent["id"], [])]
        return view

    def _agents(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        body: Any,
        user: dict[str, Any],
    ) -> Reply:
        org = user["organization_id"]
        if len(parts) == 1:
            if method == "GET":
                status = query.get("status")
                if status is not None and status not in ("draft", "active", "archived"):
                    return error(422, "VALIDATION_ERROR", "Request validation failed")
                records = [
                    self._agent_view(a, full=False)
                    for a in self.agents.values()
                    if a["organization_id"] == org
                    and (status is None or a["status"] == status)
                    and ("workspace_id" not in query or a["workspace_id"] == query["workspace_id"])
                ]
                return self._paged(records, query, "records", 100)
            if method == "POST":
                body = body if isinstance(body, dict) else {}
                lacking = [f for f in ("workspace_id", "agent_type", "model_id") if f not in body]
                if lacking:
                    return missing(*lacking)
                agent_id = self.new_id()
                agent = {
                    "id": agent_id,
                    "organization_id": org,
                    "workspace_id": body["workspace_id"],
                    "name": body.get("name", ""),
                    "description": body.get("description") or "",
                    "agent_type": body["agent_type"],
                    "status": "draft",
                    "system_prompt": body.get("system_prompt") or "",
                    "model_id": body["model_id"],
                    "temperature": widened_float32(float(body.get("temperature", 0.7))),
                    "max_tokens": body.get("max_tokens") or 0,
                    "created_by": user["id"],
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                self.agents[agent_id] = agent
                return Reply(201, self._agent_view(agent, full=False))
            return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        found = self.agents.get(parts[1])
        if found is None:
            return error(404, "NOT_FOUND", "Agent not found")
        agent = found
        if agent["organization_id"] != org:
            return error(403, "FORBIDDEN", "Not authorized to access this agent")
        if len(parts) == 2:
            if method == "GET":
                return Reply(200, self._agent_view(agent, full=True))
            if method == "PUT":
                changes = {
                    k: v
                    for k, v in (body or {}).items()
                    if v is not None
                    and k
                    in (
                        "name",
                        "description",
                        "system_prompt",
                        "model_id",
                        "temperature",
                        "max_tokens",
                        "status",
                    )
                }
                if not changes:
                    return error(400, "BAD_REQUEST", "No fields to update")
                if "temperature" in changes:
                    changes["temperature"] = widened_float32(float(changes["temperature"]))
                agent.update(changes)
                return Reply(200, self._agent_view(agent, full=False))
            if method == "DELETE":
                agent["status"] = "archived"
                return Reply(200, {"message": "Agent archived successfully"})
            return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        if parts[2] == "tools":
            tools = self.tools.setdefault(agent["id"], [])
            if len(parts) == 3 and method == "GET":
                return Reply(200, [dict(t) for t in tools])
            if len(parts) == 3 and method == "POST":
                body = body if isinstance(body, dict) else {}
                lacking = [f for f in ("tool_type", "name", "description") if not body.get(f)]
                if lacking:
                    return missing(*lacking)
                tool = {
                    "id": self.new_id(),
                    "agent_id": agent["id"],
                    "tool_type": body["tool_type"],
                    "name": body["name"],
                    "description": body["description"],
                    "config": json.dumps(body.get("config", {})),
                    "is_enabled": True,
                    "created_at": _now(),
                }
                tools.append(tool)
                return Reply(201, tool)
            if len(parts) == 4 and method == "DELETE":
                for tool in tools:
                    if tool["id"] == parts[3]:
                        tools.remove(tool)
                        return Reply(200, {"message": "Tool deleted"})
                return error(404, "NOT_FOUND", "Tool not found")
        if parts[2] == "versions" and len(parts) == 3:
            versions = self.versions.setdefault(agent["id"], [])
            if method == "GET":
                return Reply(200, list(reversed(versions)))
            if method == "POST":
                if not isinstance(body, dict):
                    return missing("body")
                version = {
                    "id": self.new_id(),
                    "agent_id": agent["id"],
                    "version_number": len(versions) + 1,
                    "config_snapshot": json.dumps(
                        {k: agent[k] for k in ("name", "model_id", "temperature")}
                    ),
                    "changelog": body.get("changelog"),
                    "created_by": user["id"],
                    "created_at": _now(),
                }
                versions.append(version)
                return Reply(201, version)
        return error(404, "NOT_FOUND", "Not Found")

    # ---- pipelines -------------------------------------------------------------------

    def _pipeline_view(self, pipeline: dict[str, Any], *, full: bool) -> dict[str, Any]:
        view = dict(pipeline)
        if full:
            nodes, connections = self.graph_of(pipeline["id"])
            view["found"] = True
            view["nodes"] = [dict(n) for n in nodes]
            view["connections"] = [dict(c) for c in connections]
        return view

    def _pipelines(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        body: Any,
        user: dict[str, Any],
    ) -> Reply:
        if len(parts) == 1:
            if method == "GET":
                if "organization_id" not in query:
                    return error(
                        422,
                        "VALIDATION_ERROR",
                        "Request validation failed",
                        {
                            "errors": [
                                {
                                    "field": "query.organization_id",
                                    "message": "Field required",
                                    "type": "missing",
                                }
                            ]
                        },
                    )
                # The hole: whatever organization is asked for is listed.
                records = [
                    self._pipeline_view(p, full=False)
                    for p in self.pipelines.values()
                    if p["organization_id"] == query["organization_id"]
                    and ("workspace_id" not in query or p["workspace_id"] == query["workspace_id"])
                    and ("status" not in query or p["status"] == query["status"])
                ]
                return self._paged(records, query, "data", 100)
            if method == "POST":
                body = body if isinstance(body, dict) else {}
                lacking = [
                    f
                    for f in ("organization_id", "workspace_id", "name", "pattern")
                    if f not in body
                ]
                if lacking:
                    return missing(*lacking)
                if body["pattern"] not in PATTERNS:
                    return error(
                        400, "BAD_REQUEST", f"Invalid pattern. Must be one of: {list(PATTERNS)}"
                    )
                pipeline_id = self.new_id()
                pipeline = {
                    "id": pipeline_id,
                    # Stores whatever organization the body names.
                    "organization_id": body["organization_id"],
                    "workspace_id": body["workspace_id"],
                    "name": body["name"],
                    "description": body.get("description") or "",
                    "pattern": body["pattern"],
                    # Not validated.
                    "status": body.get("status") or "draft",
                    "created_by": user["id"],
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                self.pipelines[pipeline_id] = pipeline
                return Reply(200, {"data": self._pipeline_view(pipeline, full=False)})
            return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        found = self.pipelines.get(parts[1])
        if found is None:
            return error(404, "NOT_FOUND", "Pipeline not found")
        pipeline = found
        # No organization check here: another organization's pipeline is answered too.
        if len(parts) == 2:
            if method == "GET":
                return Reply(200, {"data": self._pipeline_view(pipeline, full=True)})
            if method == "PUT":
                changes = {
                    k: v
                    for k, v in (body or {}).items()
                    if v is not None and k in ("name", "description", "pattern", "status")
                }
                if not changes:
                    return error(400, "BAD_REQUEST", "No fields to update")
                if "pattern" in changes and changes["pattern"] not in PATTERNS:
                    return error(400, "BAD_REQUEST", "Invalid pattern")
                pipeline.update(changes)
                return Reply(200, {"data": self._pipeline_view(pipeline, full=False)})
            if method == "DELETE":
                pipeline["status"] = "archived"
                return Reply(200, {"message": "Pipeline archived"})
            return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        if parts[2] == "graph" and len(parts) == 3 and method == "PUT":
            return self._put_graph(pipeline, body)
        if parts[2] == "nodes" and len(parts) == 3 and method == "PUT":
            return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        return error(404, "NOT_FOUND", "Not Found")

    def _put_graph(self, pipeline: dict[str, Any], body: Any) -> Reply:
        if not isinstance(body, dict) or "nodes" not in body or "connections" not in body:
            return missing(*(f for f in ("nodes", "connections") if f not in (body or {})))
        for index, node in enumerate(body["nodes"]):
            if "label" not in node:
                return missing(f"nodes.{index}.label")
            if "config" in node and not isinstance(node["config"], dict):
                return error(422, "VALIDATION_ERROR", "Request validation failed")
        pipeline_id = pipeline["id"]
        # Replace: delete every connection and node, then insert one by one, skipping
        # whatever fails — and answer 200 either way.
        for key in [k for k, c in self.connections.items() if c["pipeline_id"] == pipeline_id]:
            del self.connections[key]
        for key in [k for k, n in self.nodes.items() if n["pipeline_id"] == pipeline_id]:
            del self.nodes[key]
        for node in body["nodes"]:
            node_id = node.get("id") or self.new_id()
            if node_id in self.nodes or node_id in self.failing_node_ids:
                continue  # unique-key violation (ids are global): skipped silently
            self.nodes[node_id] = {
                "id": node_id,
                "pipeline_id": pipeline_id,
                "node_type": node.get("node_type", ""),
                "agent_id": node.get("agent_id") or "",
                "label": node["label"],
                "position_x": float(node.get("position_x", 0)),
                "position_y": float(node.get("position_y", 0)),
                "config": json.dumps(node["config"]) if "config" in node else "None",
                "created_at": _now(),
                "updated_at": _now(),
            }
        for connection in body["connections"]:
            connection_id = connection.get("id") or self.new_id()
            self.connections[connection_id] = {
                "id": connection_id,
                "pipeline_id": pipeline_id,
                "source_node_id": connection["source_node_id"],
                "target_node_id": connection["target_node_id"],
                "source_handle": connection.get("source_handle") or "output",
                "target_handle": connection.get("target_handle") or "input",
                "condition": (
                    json.dumps(connection["condition"]) if "condition" in connection else "None"
                ),
                "created_at": _now(),
                "updated_at": _now(),
            }
        return Reply(200, {"data": self._pipeline_view(pipeline, full=True)})

    # ---- policies --------------------------------------------------------------------

    def _policies(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        body: Any,
        user: dict[str, Any],
    ) -> Reply:
        org = user["organization_id"]
        if len(parts) == 1:
            if method == "GET":
                records = [
                    dict(p)
                    for p in self.policies.values()
                    if p["organization_id"] == org
                    and query.get("resource_type", p["resource_type"]) == p["resource_type"]
                ]
                return self._paged(records, query, "records", None)
            if method == "POST":
                body = body if isinstance(body, dict) else {}
                lacking = [
                    f for f in ("name", "resource_type", "action", "effect") if f not in body
                ]
                if lacking:
                    return missing(*lacking)
                if not isinstance(body["action"], str) or not NAME_CHARACTERS.match(body["action"]):
                    return error(422, "VALIDATION_ERROR", "Request validation failed")
                if not isinstance(body.get("conditions", {}), dict):
                    return error(422, "VALIDATION_ERROR", "Request validation failed")
                policy_id = self.new_id()
                policy = {
                    "id": policy_id,
                    "organization_id": org,
                    "name": body["name"],
                    "description": body.get("description") or "",
                    "resource_type": body["resource_type"],
                    "action": body["action"],
                    "effect": body["effect"],
                    "conditions": body.get("conditions", {}),
                    "resource_refs": "",
                    "priority": 0,
                    "status": body.get("status", "active"),
                    "created_by": user["id"],
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                self.policies[policy_id] = policy
                if policy["name"].startswith(LOCK_RECORD_PREFIX):
                    self.lock_records_created += 1
                # The create answer carries the conditions as JSON text; reads, objects.
                return Reply(201, {**policy, "conditions": json.dumps(policy["conditions"])})
            return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        found = self.policies.get(parts[1])
        if found is None:
            return error(404, "NOT_FOUND", "Policy not found")
        policy = found
        if policy["organization_id"] != org:
            return error(403, "FORBIDDEN", "Not authorized to access this policy")
        if method == "GET":
            return Reply(200, {**policy, "found": True})
        if method == "PUT":
            if not body:
                return error(400, "BAD_REQUEST", "No fields to update")
            if "description" in body and body["description"] is None:
                return error(500, "INTERNAL_ERROR", "null value in column description")
            policy.update(
                {
                    k: v
                    for k, v in body.items()
                    if k
                    in ("name", "description", "resource_type", "action", "effect", "conditions")
                }
            )
            return Reply(200, dict(policy))
        if method == "DELETE":
            del self.policies[policy["id"]]
            return Reply(204)
        return error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
