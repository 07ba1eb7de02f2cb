"""A fake of Kaizen Studio's gateway, deployment and promotion endpoints, on loopback.

It answers with the shapes recorded from a live server (tests/studio/fixtures/,
copied from the project's recorded exchanges) and keeps that server's quirks, so
the reconciler meets them in CI:

* a deploy calls the gateway (``POST {api_url}/api/v1/agents/register`` with
  ``Authorization: Bearer <api_key>``) inside the POST and answers ``active``, or
  200 ``failed`` with ``error_message`` when the gateway cannot be reached;
* logs are listed out of time order;
* several active deployments of one agent on one gateway are allowed;
* a promotion to production (or one a rule marks) waits for approval;
  ``/approve`` carries it out; ``/execute`` **ignores approval** (and is counted,
  so a test can prove kaizenctl never called it on a waiting promotion);
* a promotion from a stopped source answers 400 and leaves a pending record;
* the create answer of a pending promotion has no ``created_at``;
* stop calls ``DELETE`` on the gateway; a second stop is a 400.

Agents and their versions come from elsewhere (the reference server in these
tests): ``agent_source`` returns an agent's config by id.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from kaizenctl.api.gateways import StudioRollout
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.session import ApiSession, TokenState

FIXTURES = Path(__file__).parent / "fixtures"
PREFIX = "/api/v1"
T = TypeVar("T")


def use_rollout(
    transport: httpx.AsyncBaseTransport,
    use: Callable[[StudioRollout], Awaitable[T]],
    policy: RetryPolicy | None = None,
) -> T:
    """``use``'s result with the gateway services over ``transport`` (a token session), closed."""

    async def go() -> T:
        session = ApiSession(
            "http://studio.test/api/v1",
            transport=transport,
            tokens=TokenState("token"),
            policy=policy,
        )
        try:
            return await use(StudioRollout(session))
        finally:
            await session.aclose()

    return asyncio.run(go())


def recorded(name: str) -> dict[str, Any]:
    """A recorded exchange (method, path, request_body, status, response_body)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def _shape(name: str) -> list[str]:
    """The field names, in order, of a recorded answer."""
    body = recorded(name)["response_body"]
    return list(body)


GATEWAY_FIELDS = _shape("gateways-create")
DEPLOYMENT_FIELDS = _shape("deployments-create")
PROMOTION_FIELDS = _shape("promotions-create-production-needs-approval")


@dataclass
class FakeState:
    organization_id: str = "org-fake"
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    promotions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (method, path) of every request, oldest first.
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Promotion ids /execute was called on, with their status at that moment.
    executed: list[tuple[str, str, bool]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: Iterator[int] = field(default_factory=itertools.count)


@dataclass
class RolloutFake:
    url: str
    state: FakeState

    @property
    def api_url(self) -> str:
        return f"{self.url}{PREFIX}"

    # What a person does on the platform, through its API.
    def approve(self, promotion_id: str) -> dict[str, Any]:
        answer = httpx.post(f"{self.api_url}/promotions/{promotion_id}/approve", json={})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def reject(self, promotion_id: str, reason: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.api_url}/promotions/{promotion_id}/reject", json={"reason": reason}
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def stop_by_hand(self, deployment_id: str) -> None:
        httpx.post(f"{self.api_url}/deployments/{deployment_id}/stop").raise_for_status()

    def deploy_by_hand(self, agent_id: str, gateway_id: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.api_url}/deployments", json={"agent_id": agent_id, "gateway_id": gateway_id}
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def active(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                d
                for d in self.state.deployments.values()
                if d["status"] == "active" and (agent_id is None or d["agent_id"] == agent_id)
            ]

    def gateway_named(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            return next(g for g in self.state.gateways.values() if g["name"] == name)

    def writes(self) -> list[tuple[str, str]]:
        with self.state.lock:
            return [r for r in self.state.requests if r[0] != "GET"]


def _blank(fields: list[str]) -> dict[str, Any]:
    """A record with every recorded field, unset as the server writes it ("")."""
    return dict.fromkeys(fields, "")


def _now(state: FakeState) -> str:
    # A strictly increasing clock: ordering by time is deterministic without sleeping.
    tick = next(state.clock)
    moment = datetime(2026, 12, 1, 12, 0, tzinfo=UTC) + timedelta(milliseconds=tick)
    return moment.replace(tzinfo=None).isoformat()


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"code": code, "message": message}}


def rollout_routes(
    state: FakeState, agent_source: Callable[[str], dict[str, Any]]
) -> Callable[[str, str, Any], tuple[int, Any]]:
    """``(method, path, body) -> (status, answer)`` for /gateways, /deployments, /promotions.

    Callers hold ``state.lock``; another fake can mount these routes in-process.
    """

    def gateway_call(gateway_id: str, method: str, path: str, body: Any = None) -> httpx.Response:
        gateway = state.gateways[gateway_id]
        return httpx.request(
            method,
            f"{gateway['api_url']}{path}",
            json=body,
            headers={"Authorization": f"Bearer {state.keys[gateway_id]}"},
            timeout=5,
        )

    def deploy(agent_id: str, gateway_id: str, version_id: str) -> dict[str, Any]:
        if gateway_id not in state.gateways:
            raise _Error(500, "INTERNAL_ERROR", f"Gateway record {gateway_id} not found")
        deployment_id = str(uuid.uuid4())
        created = _now(state)
        record = _blank(DEPLOYMENT_FIELDS)
        record.update(
            id=deployment_id,
            organization_id=state.organization_id,
            agent_id=agent_id,
            agent_version_id=version_id,
            gateway_id=gateway_id,
            deployed_by="user-fake",
            created_at=created,
            updated_at=created,
        )
        logs = [("started", "Deployment initiated"), ("building", "Building agent")]
        agent = agent_source(agent_id)
        try:
            answer = gateway_call(
                gateway_id,
                "POST",
                "/api/v1/agents/register",
                {
                    "name": agent.get("name", agent_id),
                    "description": agent.get("description") or "",
                    "agent_type": agent.get("agent_type") or "chat",
                    # The gateway gets the current prompt, whatever version is pinned.
                    "config": agent.get("system_prompt", ""),
                },
            )
            answer.raise_for_status()
            registration = str(answer.json()["id"])
        except (httpx.HTTPError, KeyError, ValueError):
            record.update(status="failed", error_message="All connection attempts failed")
            logs.append(("failed", "All connection attempts failed"))
        else:
            endpoint = f"{state.gateways[gateway_id]['api_url']}/api/v1/agents/{registration}"
            record.update(
                status="active",
                registration_id=registration,
                endpoint_url=endpoint,
                deployed_at=_now(state) + "+00:00",
            )
            logs.append(("registered", f"Agent registered with endpoint: {endpoint}"))
        state.deployments[deployment_id] = record
        entries = []
        for event, message in logs:
            stamp = _now(state)
            entries.append(
                {
                    "id": str(uuid.uuid4()),
                    "deployment_id": deployment_id,
                    "event_type": event,
                    "message": message,
                    "metadata": "None",
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
        # The server lists logs in no particular order: newest first here.
        state.logs[deployment_id] = list(reversed(entries))
        return record

    def execute(promotion: dict[str, Any]) -> dict[str, Any]:
        source = state.deployments[promotion["source_deployment_id"]]
        target = deploy(
            promotion["agent_id"], promotion["target_gateway_id"], source["agent_version_id"]
        )
        promotion.update(
            status="completed",
            target_deployment_id=target["id"],
            completed_at=_now(state) + "+00:00",
        )
        promotion.setdefault("created_at", promotion.get("created_at") or _now(state))
        return promotion

    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.removeprefix(PREFIX).strip("/").split("/")
        resource, rest = parts[0], parts[1:]
        if resource == "gateways":
            if method == "GET" and not rest:
                return 200, {"gateways": list(state.gateways.values())}
            if method == "POST" and not rest:
                if not body.get("api_key"):
                    raise _Error(422, "VALIDATION_ERROR", "body.api_key: Field required")
                gateway_id = str(uuid.uuid4())
                created = _now(state)
                record = _blank(GATEWAY_FIELDS)
                record.update(
                    id=gateway_id,
                    organization_id=state.organization_id,
                    name=body["name"],
                    description=body.get("description") or "",
                    api_url=str(body["api_url"]).rstrip("/"),
                    environment=body.get("environment") or "development",
                    status="active",
                    health_check_url=body.get("health_check_url") or "",
                    last_health_status="unknown",
                    created_at=created,
                    updated_at=created,
                )
                state.gateways[gateway_id] = record
                state.keys[gateway_id] = body["api_key"]
                return 200, record
            gateway = state.gateways.get(rest[0]) if rest else None
            if gateway is None:
                raise _Error(404, "NOT_FOUND", "Gateway not found")
            if method == "GET":
                return 200, {**gateway, "found": True}
            if method == "PUT":
                for key, value in body.items():
                    if value is None:
                        continue
                    if key == "api_key":
                        state.keys[gateway["id"]] = value
                    elif key in gateway:
                        gateway[key] = str(value).rstrip("/") if key == "api_url" else value
                return 200, {**gateway, "found": True}
            if method == "DELETE":
                del state.gateways[gateway["id"]]
                return 200, {"message": "Gateway deleted"}
        if resource == "deployments":
            if method == "GET" and not rest:
                return 200, {"deployments": list(state.deployments.values())}
            if method == "POST" and not rest:
                if body.get("agent_id") is None or body.get("gateway_id") is None:
                    raise _Error(422, "VALIDATION_ERROR", "body.agent_id: Field required")
                record = deploy(
                    body["agent_id"], body["gateway_id"], body.get("agent_version_id") or ""
                )
                return 200, record
            deployment = state.deployments.get(rest[0]) if rest else None
            if deployment is None:
                raise _Error(404, "NOT_FOUND", "Deployment not found")
            if method == "GET" and len(rest) == 1:
                return 200, {**deployment, "found": True}
            if method == "GET" and rest[1:] == ["logs"]:
                return 200, {"logs": state.logs.get(deployment["id"], [])}
            if method == "POST" and rest[1:] == ["stop"]:
                if deployment["status"] != "active":
                    raise _Error(
                        400,
                        "BAD_REQUEST",
                        f"Cannot stop deployment in status: {deployment['status']}",
                    )
                gateway_call(
                    deployment["gateway_id"],
                    "DELETE",
                    f"/api/v1/agents/{deployment['registration_id']}",
                )
                deployment.update(status="stopped", stopped_at=_now(state) + "+00:00")
                return 200, {**deployment, "found": True}
            if method == "DELETE":
                raise _Error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        if resource == "promotions":
            if method == "GET" and not rest:
                return 200, list(state.promotions.values())
            if method == "POST" and not rest:
                promotion_id = str(uuid.uuid4())
                needs = body["target_environment"] == "production"
                record = _blank(PROMOTION_FIELDS)
                record.update(
                    {
                        k: body[k]
                        for k in (
                            "agent_id",
                            "source_deployment_id",
                            "target_gateway_id",
                            "source_environment",
                            "target_environment",
                        )
                    },
                    id=promotion_id,
                    organization_id=state.organization_id,
                    status="pending",
                    requires_approval=needs,
                    created_by="user-fake",
                )
                stored = {**record, "created_at": _now(state)}
                state.promotions[promotion_id] = stored
                source = state.deployments.get(body["source_deployment_id"])
                if source is None or source["status"] != "active":
                    # The record stays behind as pending, without requiring approval.
                    stored["requires_approval"] = False
                    status = source["status"] if source else "missing"
                    raise _Error(400, "BAD_REQUEST", f"Source deployment is not active: {status}")
                if needs:
                    return 200, record  # a pending answer carries no created_at
                return 200, {**execute(stored), "found": True}
            promotion = state.promotions.get(rest[0]) if rest else None
            if promotion is None:
                raise _Error(404, "NOT_FOUND", "Promotion not found")
            if method == "GET" and len(rest) == 1:
                return 200, {**promotion, "found": True}
            action = rest[1] if len(rest) > 1 else ""
            if method == "POST" and action == "execute":
                state.executed.append(
                    (promotion["id"], promotion["status"], bool(promotion["requires_approval"]))
                )
                if promotion["status"] in ("completed", "rejected"):
                    raise _Error(
                        400,
                        "BAD_REQUEST",
                        f"Cannot execute promotion in status: {promotion['status']}",
                    )
                return 200, execute(promotion)  # ignores approval, as the server does
            if method == "POST" and action == "approve":
                if promotion["status"] != "pending":
                    raise _Error(
                        400,
                        "BAD_REQUEST",
                        f"Cannot approve promotion in status: {promotion['status']}",
                    )
                promotion.update(approved_by="user-fake", approved_at=_now(state) + "+00:00")
                return 200, execute(promotion)
            if method == "POST" and action == "reject":
                promotion.update(
                    status="rejected",
                    rejection_reason=(body or {}).get("reason", ""),
                    completed_at=_now(state) + "+00:00",
                )
                return 200, {**promotion, "found": True}
        raise _Error(404, "NOT_FOUND", "Not Found")

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        try:
            return route(method, path, body)
        except _Error as error:
            return error.status, error.body

    return answer


def _handler(
    state: FakeState, agent_source: Callable[[str], dict[str, Any]]
) -> type[BaseHTTPRequestHandler]:
    routes = rollout_routes(state, agent_source)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            path = self.path.split("?", 1)[0]
            with state.lock:
                state.requests.append((self.command, path))
                if path.startswith(PREFIX):
                    status, answer = routes(self.command, path, body)
                else:
                    status, answer = 404, {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def rollout_fake(agent_source: Callable[[str], dict[str, Any]]) -> Iterator[RolloutFake]:
    """The fake on a free loopback port, stopped when the block ends."""
    state = FakeState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, agent_source))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="rollout-fake", daemon=True)
    thread.start()
    try:
        yield RolloutFake(url=f"http://127.0.0.1:{server.server_address[1]}", state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
