"""The FastAPI application: every endpoint and rule of CONTRACT.md.

No ``from __future__ import annotations`` here: FastAPI reads the route
signatures at run time, and some annotations name aliases local to create_app.

Endpoints are synchronous and each runs its whole work inside one
``Database.transaction()``: the lock makes requests serial, the transaction
makes each all-or-nothing. Every query is scoped to the caller's organization,
so another organization's id is simply "not found".
"""

import json
import math
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Body as BodyParam
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.types import ASGIApp

from kaizenctl.api.models import DeploymentStatus, Effect, Environment, PipelineStatus, Provider
from kaizenctl.server import auth, schemas
from kaizenctl.server.bodies import BodyGuard
from kaizenctl.server.db import Database
from kaizenctl.server.faults import FaultMiddleware, FaultPatch, FaultState
from kaizenctl.server.lifecycle import ENVIRONMENT_ORDER, LIVE_STATUSES, advance, iso, log

API = "/api/v1"
FAILURE_FLAG = "simulate_deploy_failure"
Loc = Sequence[str | int]


@dataclass
class ServerState:
    """Everything a running server holds: its database, its fault knobs and its clock.

    ``clock`` (epoch seconds) drives token expiry and the deployment life cycle, so a
    test can move time instead of sleeping through it.
    """

    db: Database
    faults: FaultState = field(default_factory=FaultState)
    secret: str = ""
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        with self.db.transaction() as conn:
            self.secret = auth.signing_secret(conn)


# ---- small helpers ----


def new_id() -> str:
    return uuid.uuid4().hex


def not_found(kind: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{kind} not found")


def conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


def invalid(errors: list[tuple[Loc, str]]) -> RequestValidationError:
    """A 422 in FastAPI's own shape, for rules a schema cannot express."""
    return RequestValidationError(
        [{"loc": list(loc), "msg": msg, "type": "value_error"} for loc, msg in errors]
    )


def patch_changes(body: schemas.Patch) -> dict[str, Any]:
    """The fields a PATCH sets; ``null`` on a non-nullable field is a 422."""
    nulls = body.null_fields()
    if nulls:
        raise invalid([(("body", name), "may not be null") for name in nulls])
    return body.model_dump(exclude_unset=True)


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _agent(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "system_prompt": row["system_prompt"],
        "provider": row["provider"],
        "model": row["model"],
        "temperature": row["temperature"],
        "max_tokens": row["max_tokens"],
        "tools": json.loads(row["tools"]),
        "is_active": bool(row["is_active"]),
        "organization_id": row["organization_id"],
        "created_by_id": row["created_by_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _pipeline(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "status": row["status"],
        "pattern": row["pattern"],
        "config": json.loads(row["config"]),
        "version": row["version"],
        "organization_id": row["organization_id"],
        "created_by_id": row["created_by_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _node(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "pipeline_id": row["pipeline_id"],
        "node_type": row["node_type"],
        "agent_id": row["agent_id"],
        "config": json.loads(row["config"]),
        "position_x": row["position_x"],
        "position_y": row["position_y"],
    }


def _connection(row: sqlite3.Row) -> dict[str, Any]:
    return {key: row[key] for key in schemas.ConnectionOut.model_fields}


def _deployment(row: sqlite3.Row) -> dict[str, Any]:
    result = {key: row[key] for key in schemas.DeploymentOut.model_fields if key != "config"}
    result["config"] = json.loads(row["config"])
    return result


def _policy(row: sqlite3.Row) -> dict[str, Any]:
    result = {key: row[key] for key in schemas.PolicyOut.model_fields}
    result["actions"] = json.loads(row["actions"])
    result["conditions"] = json.loads(row["conditions"])
    return result


def _user(row: sqlite3.Row) -> dict[str, Any]:
    result = {key: row[key] for key in schemas.UserOut.model_fields}
    result["is_active"] = bool(row["is_active"])
    return result


@dataclass(frozen=True)
class ListQuery:
    """The common list parameters, already validated."""

    page: int
    page_size: int
    search: str | None
    sort_by: str | None
    sort_order: str


def list_page(
    conn: sqlite3.Connection,
    table: str,
    org_id: str,
    query: ListQuery,
    filters: dict[str, object],
    convert: Callable[[sqlite3.Row], dict[str, Any]],
    cap: int | None,
    searchable: bool = True,
) -> dict[str, Any]:
    """One page of an organization's rows of ``table``, as CONTRACT "Lists" says."""
    where = ["organization_id = ?"]
    params: list[object] = [org_id]
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.search and searchable:
        where.append("instr(casefold(name), ?) > 0")
        params.append(query.search.casefold())
    clause = " AND ".join(where)
    total = int(conn.execute(f"SELECT count(*) FROM {table} WHERE {clause}", params).fetchone()[0])
    size = min(query.page_size, cap) if cap else query.page_size
    direction = "DESC" if query.sort_order == "desc" else "ASC"
    order = query.sort_by or "created_at"
    # Clip the offset in Python: a huge page number must answer an empty page, not overflow.
    offset = min((query.page - 1) * size, total)
    rows = conn.execute(
        f"SELECT * FROM {table} WHERE {clause} ORDER BY {order} {direction}, id {direction} "
        "LIMIT ? OFFSET ?",
        [*params, size, offset],
    ).fetchall()
    return {
        "items": [convert(row) for row in rows],
        "total": total,
        "page": query.page,
        "page_size": size,
        "total_pages": math.ceil(total / size) if total else 0,
    }


def list_query(
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    search: Annotated[str | None, Query(max_length=256)] = None,
    sort_order: Annotated[Literal["asc", "desc"], Query()] = "asc",
) -> dict[str, Any]:
    return {"page": page, "page_size": page_size, "search": search, "sort_order": sort_order}


NamedSort = Literal["name", "created_at", "updated_at"]
TimeSort = Literal["created_at", "updated_at"]

E401: dict[int | str, dict[str, Any]] = {401: {"model": schemas.ErrorOut}}
E404: dict[int | str, dict[str, Any]] = {**E401, 404: {"model": schemas.ErrorOut}}
E409: dict[int | str, dict[str, Any]] = {**E404, 409: {"model": schemas.ErrorOut}}
E409_ONLY: dict[int | str, dict[str, Any]] = {**E401, 409: {"model": schemas.ErrorOut}}


def write_patch(
    conn: sqlite3.Connection,
    table: str,
    org_id: str,
    row_id: str,
    current: dict[str, Any],
    changes: dict[str, Any],
    *,
    encode: dict[str, Callable[[Any], Any]] | None = None,
    bump_version: bool = False,
) -> bool:
    """Store the PATCHed fields that differ from ``current``; False when none do (a no-op)."""
    changed = {k: v for k, v in changes.items() if current[k] != v}
    if not changed:
        return False
    if "name" in changed:
        _unique_name(conn, table, org_id, changed["name"], row_id)
    for column, to_column in (encode or {}).items():
        if column in changed:
            changed[column] = to_column(changed[column])
    changed["updated_at"] = iso()
    if bump_version:
        changed["version"] = current["version"] + 1
    assignments = ", ".join(f"{column} = ?" for column in changed)
    conn.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*changed.values(), row_id])
    return True


def _unique_name(conn: sqlite3.Connection, table: str, org_id: str, name: str, own_id: str) -> None:
    row = conn.execute(
        f"SELECT id FROM {table} WHERE organization_id = ? AND name = ? AND id != ?",
        (org_id, name, own_id),
    ).fetchone()
    if row is not None:
        raise conflict(f"a {table[:-1]} named {name!r} already exists")


def create_app(state: ServerState, *, admin: bool = False) -> FastAPI:
    """The FastAPI app over ``state``; ``admin`` mounts the fault and request-log endpoints."""
    app = FastAPI(
        title="Kaizen Studio (kaizenctl reference server)",
        version="1.0.0",
        description=(
            "The reference implementation of the Kaizen Studio API contract. Deployments "
            f"of a pipeline whose config has `{FAILURE_FLAG}: true` (or a list of the "
            'environments that fail, e.g. `["staging"]`; or whose deployment '
            "config has it) end `failed`, with an error-level log line saying why."
        ),
        redirect_slashes=False,
    )
    db = state.db
    bearer = HTTPBearer(auto_error=False)

    def principal(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> auth.Principal:
        headers = {"WWW-Authenticate": "Bearer"}
        if creds is None:
            raise HTTPException(401, "Not authenticated", headers=headers)
        found = auth.read_access_token(state.secret, creds.credentials, now=state.clock())
        if found is None:
            raise HTTPException(401, "Invalid or expired access token", headers=headers)
        return found

    Caller = Annotated[auth.Principal, Depends(principal)]
    Lists = Annotated[dict[str, Any], Depends(list_query)]

    def tokens_for(conn: sqlite3.Connection, user: sqlite3.Row) -> dict[str, str]:
        who = auth.Principal(user["id"], user["organization_id"])
        ttl = state.faults.knobs.access_token_ttl_s
        return {
            "access_token": auth.issue_access_token(state.secret, who, ttl, now=state.clock()),
            "refresh_token": auth.issue_refresh_token(conn, user["id"], now=state.clock()),
            "token_type": "bearer",
        }

    # ---- auth ----

    @app.post(f"{API}/auth/login", response_model=schemas.TokensOut, tags=["auth"], responses=E401)
    def login(username: Annotated[str, Form()], password: Annotated[str, Form()]) -> dict[str, str]:
        with db.transaction() as conn:
            user = conn.execute(
                "SELECT * FROM users WHERE email = ?", (username.strip().casefold(),)
            ).fetchone()
            if (
                user is None
                or not user["is_active"]
                or not auth.check_password(password, user["password_hash"])
            ):
                raise HTTPException(401, "Incorrect email or password")
            return tokens_for(conn, user)

    @app.post(
        f"{API}/auth/register",
        status_code=201,
        response_model=schemas.RegisterOut,
        tags=["auth"],
        responses=E409_ONLY,
    )
    def register(body: schemas.RegisterIn) -> dict[str, Any]:
        with db.transaction() as conn:
            user = create_user(
                conn, body.email, body.password, body.full_name, body.organization_name
            )
            return {"user": _user(user), "tokens": tokens_for(conn, user)}

    @app.post(
        f"{API}/auth/refresh", response_model=schemas.TokensOut, tags=["auth"], responses=E401
    )
    def refresh(body: schemas.RefreshIn) -> dict[str, str]:
        with db.transaction() as conn:
            user_id = auth.use_refresh_token(conn, body.refresh_token, now=state.clock())
            user = (
                conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
                if user_id
                else None
            )
            if user is None or not user["is_active"]:
                raise HTTPException(401, "Invalid or used refresh token")
            return tokens_for(conn, user)

    @app.post(f"{API}/auth/logout", status_code=204, tags=["auth"], responses=E401)
    def logout(
        caller: Caller, body: Annotated[schemas.LogoutIn | None, BodyParam()] = None
    ) -> Response:
        with db.transaction() as conn:
            auth.revoke_refresh_tokens(conn, caller.user_id, body.refresh_token if body else None)
        return Response(status_code=204)

    @app.get(f"{API}/users/me", response_model=schemas.UserOut, tags=["auth"], responses=E401)
    def me(caller: Caller) -> dict[str, Any]:
        with db.transaction() as conn:
            row = conn.execute("SELECT * FROM users WHERE id = ?", (caller.user_id,)).fetchone()
            if row is None:
                raise HTTPException(401, "Unknown user")
            return _user(row)

    # ---- agents ----

    def get_agent(conn: sqlite3.Connection, caller: auth.Principal, agent_id: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM agents WHERE id = ? AND organization_id = ?",
            (agent_id, caller.organization_id),
        ).fetchone()
        if not isinstance(row, sqlite3.Row):
            raise not_found("Agent")
        return row

    @app.get(
        f"{API}/agents",
        response_model=schemas.Page[schemas.AgentOut],
        tags=["agents"],
        responses=E401,
    )
    def list_agents(
        caller: Caller,
        lists: Lists,
        sort_by: NamedSort | None = None,
        status: Literal["active", "inactive", "draft"] | None = None,
        provider: Provider | None = None,
    ) -> dict[str, Any]:
        query = ListQuery(sort_by=sort_by, **lists)
        filters: dict[str, object] = {"provider": provider}
        if status == "draft":
            # Accepted for the seed's sake; no agent is ever a draft.
            filters["1"] = 0
        elif status is not None:
            filters["is_active"] = 1 if status == "active" else 0
        with db.transaction() as conn:
            return list_page(
                conn,
                "agents",
                caller.organization_id,
                query,
                filters,
                _agent,
                state.faults.knobs.page_size_cap,
            )

    @app.post(
        f"{API}/agents",
        status_code=201,
        response_model=schemas.AgentOut,
        tags=["agents"],
        responses=E409_ONLY,
    )
    def create_agent(caller: Caller, body: schemas.AgentCreate) -> dict[str, Any]:
        with db.transaction() as conn:
            _unique_name(conn, "agents", caller.organization_id, body.name, "")
            agent_id, now = new_id(), iso()
            conn.execute(
                "INSERT INTO agents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    agent_id,
                    caller.organization_id,
                    body.name,
                    body.description,
                    body.system_prompt,
                    body.provider,
                    body.model,
                    body.temperature,
                    body.max_tokens,
                    dumps(body.tools),
                    int(body.is_active),
                    caller.user_id,
                    now,
                    now,
                ),
            )
            return _agent(get_agent(conn, caller, agent_id))

    @app.get(
        f"{API}/agents/{{agent_id}}",
        response_model=schemas.AgentOut,
        tags=["agents"],
        responses=E404,
    )
    def read_agent(caller: Caller, agent_id: str) -> dict[str, Any]:
        with db.transaction() as conn:
            return _agent(get_agent(conn, caller, agent_id))

    @app.patch(
        f"{API}/agents/{{agent_id}}",
        response_model=schemas.AgentOut,
        tags=["agents"],
        responses=E409,
    )
    def patch_agent(caller: Caller, agent_id: str, body: schemas.AgentPatch) -> dict[str, Any]:
        changes = patch_changes(body)
        with db.transaction() as conn:
            current = _agent(get_agent(conn, caller, agent_id))
            if not write_patch(
                conn,
                "agents",
                caller.organization_id,
                agent_id,
                current,
                changes,
                encode={"tools": dumps, "is_active": int},
            ):
                return current
            return _agent(get_agent(conn, caller, agent_id))

    @app.delete(f"{API}/agents/{{agent_id}}", status_code=204, tags=["agents"], responses=E409)
    def delete_agent(caller: Caller, agent_id: str) -> Response:
        with db.transaction() as conn:
            get_agent(conn, caller, agent_id)
            used = conn.execute(
                "SELECT p.name FROM nodes n JOIN pipelines p ON p.id = n.pipeline_id "
                "WHERE n.agent_id = ? LIMIT 1",
                (agent_id,),
            ).fetchone()
            if used is not None:
                raise conflict(f"agent is used by a node of pipeline {used['name']!r}")
            conn.execute("DELETE FROM agent_versions WHERE agent_id = ?", (agent_id,))
            conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
        return Response(status_code=204)

    def _version(row: sqlite3.Row) -> dict[str, Any]:
        result = {key: row[key] for key in schemas.AgentVersionOut.model_fields}
        result["snapshot"] = json.loads(row["snapshot"])
        return result

    @app.get(
        f"{API}/agents/{{agent_id}}/versions",
        response_model=list[schemas.AgentVersionOut],
        tags=["agents"],
        responses=E404,
    )
    def list_agent_versions(caller: Caller, agent_id: str) -> list[dict[str, Any]]:
        with db.transaction() as conn:
            get_agent(conn, caller, agent_id)
            rows = conn.execute(
                "SELECT * FROM agent_versions WHERE agent_id = ? ORDER BY version DESC", (agent_id,)
            ).fetchall()
            return [_version(row) for row in rows]

    @app.post(
        f"{API}/agents/{{agent_id}}/versions",
        status_code=201,
        response_model=schemas.AgentVersionOut,
        tags=["agents"],
        responses=E404,
    )
    def create_agent_version(caller: Caller, agent_id: str) -> dict[str, Any]:
        with db.transaction() as conn:
            agent = _agent(get_agent(conn, caller, agent_id))
            snapshot = {k: agent[k] for k in schemas.AgentCreate.model_fields}
            number = conn.execute(
                "SELECT coalesce(max(version), 0) + 1 FROM agent_versions WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()[0]
            version_id = new_id()
            conn.execute(
                "INSERT INTO agent_versions VALUES (?, ?, ?, ?, ?, ?)",
                (version_id, agent_id, number, dumps(snapshot), iso(), caller.user_id),
            )
            row = conn.execute(
                "SELECT * FROM agent_versions WHERE id = ?", (version_id,)
            ).fetchone()
            return _version(row)

    # ---- pipelines ----

    def get_pipeline(
        conn: sqlite3.Connection, caller: auth.Principal, pipeline_id: str
    ) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM pipelines WHERE id = ? AND organization_id = ?",
            (pipeline_id, caller.organization_id),
        ).fetchone()
        if not isinstance(row, sqlite3.Row):
            raise not_found("Pipeline")
        return row

    @app.get(
        f"{API}/pipelines",
        response_model=schemas.Page[schemas.PipelineOut],
        tags=["pipelines"],
        responses=E401,
    )
    def list_pipelines(
        caller: Caller,
        lists: Lists,
        sort_by: NamedSort | None = None,
        status: PipelineStatus | None = None,
    ) -> dict[str, Any]:
        query = ListQuery(sort_by=sort_by, **lists)
        with db.transaction() as conn:
            return list_page(
                conn,
                "pipelines",
                caller.organization_id,
                query,
                {"status": status},
                _pipeline,
                state.faults.knobs.page_size_cap,
            )

    @app.post(
        f"{API}/pipelines",
        status_code=201,
        response_model=schemas.PipelineOut,
        tags=["pipelines"],
        responses=E409_ONLY,
    )
    def create_pipeline(caller: Caller, body: schemas.PipelineCreate) -> dict[str, Any]:
        with db.transaction() as conn:
            _unique_name(conn, "pipelines", caller.organization_id, body.name, "")
            pipeline_id, now = new_id(), iso()
            conn.execute(
                "INSERT INTO pipelines VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (
                    pipeline_id,
                    caller.organization_id,
                    body.name,
                    body.description,
                    body.status,
                    body.pattern,
                    dumps(body.config),
                    caller.user_id,
                    now,
                    now,
                ),
            )
            return _pipeline(get_pipeline(conn, caller, pipeline_id))

    @app.get(
        f"{API}/pipelines/{{pipeline_id}}",
        response_model=schemas.PipelineOut,
        tags=["pipelines"],
        responses=E404,
    )
    def read_pipeline(caller: Caller, pipeline_id: str) -> dict[str, Any]:
        with db.transaction() as conn:
            return _pipeline(get_pipeline(conn, caller, pipeline_id))

    @app.patch(
        f"{API}/pipelines/{{pipeline_id}}",
        response_model=schemas.PipelineOut,
        tags=["pipelines"],
        responses=E409,
    )
    def patch_pipeline(
        caller: Caller, pipeline_id: str, body: schemas.PipelinePatch
    ) -> dict[str, Any]:
        changes = patch_changes(body)
        with db.transaction() as conn:
            current = _pipeline(get_pipeline(conn, caller, pipeline_id))
            if not write_patch(
                conn,
                "pipelines",
                caller.organization_id,
                pipeline_id,
                current,
                changes,
                encode={"config": dumps},
                bump_version=True,
            ):
                return current  # a no-op PATCH leaves version alone
            return _pipeline(get_pipeline(conn, caller, pipeline_id))

    @app.delete(
        f"{API}/pipelines/{{pipeline_id}}", status_code=204, tags=["pipelines"], responses=E409
    )
    def delete_pipeline(caller: Caller, pipeline_id: str) -> Response:
        with db.transaction() as conn:
            get_pipeline(conn, caller, pipeline_id)
            advance(conn, state.clock())
            live = conn.execute(
                "SELECT count(*) FROM deployments WHERE pipeline_id = ? AND status IN (?, ?, ?)",
                (pipeline_id, *LIVE_STATUSES),
            ).fetchone()[0]
            if live:
                raise conflict("pipeline has a pending, deploying or active deployment")
            conn.execute("DELETE FROM nodes WHERE pipeline_id = ?", (pipeline_id,))
            conn.execute("DELETE FROM connections WHERE pipeline_id = ?", (pipeline_id,))
            conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))
        return Response(status_code=204)

    @app.get(
        f"{API}/pipelines/{{pipeline_id}}/nodes",
        response_model=list[schemas.NodeOut],
        tags=["pipelines"],
        responses=E404,
    )
    def list_nodes(caller: Caller, pipeline_id: str) -> list[dict[str, Any]]:
        with db.transaction() as conn:
            get_pipeline(conn, caller, pipeline_id)
            rows = conn.execute("SELECT * FROM nodes WHERE pipeline_id = ?", (pipeline_id,))
            return [_node(row) for row in rows]

    @app.get(
        f"{API}/pipelines/{{pipeline_id}}/connections",
        response_model=list[schemas.ConnectionOut],
        tags=["pipelines"],
        responses=E404,
    )
    def list_connections(caller: Caller, pipeline_id: str) -> list[dict[str, Any]]:
        with db.transaction() as conn:
            get_pipeline(conn, caller, pipeline_id)
            rows = conn.execute("SELECT * FROM connections WHERE pipeline_id = ?", (pipeline_id,))
            return [_connection(row) for row in rows]

    @app.put(
        f"{API}/pipelines/{{pipeline_id}}/nodes",
        status_code=204,
        tags=["pipelines"],
        responses=E404,
    )
    def put_graph(caller: Caller, pipeline_id: str, body: schemas.GraphIn) -> Response:
        with db.transaction() as conn:
            pipeline = get_pipeline(conn, caller, pipeline_id)
            check_graph(conn, caller, body)
            old_nodes = [
                _node(r)
                for r in conn.execute("SELECT * FROM nodes WHERE pipeline_id = ?", (pipeline_id,))
            ]
            old_edges = [
                _connection(r)
                for r in conn.execute(
                    "SELECT * FROM connections WHERE pipeline_id = ?", (pipeline_id,)
                )
            ]
            behaviour_changed = _behaviour(old_nodes, old_edges) != _behaviour(
                [n.model_dump() for n in body.nodes], [e.model_dump() for e in body.edges]
            )
            layout_old = {(n["id"], n["position_x"], n["position_y"]) for n in old_nodes}
            layout_new = {(n.id, n.position_x, n.position_y) for n in body.nodes}
            if not behaviour_changed and layout_old == layout_new:
                return Response(status_code=204)  # a no-op write
            conn.execute("DELETE FROM nodes WHERE pipeline_id = ?", (pipeline_id,))
            conn.executemany(
                "INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        pipeline_id,
                        n.id,
                        n.node_type,
                        n.agent_id,
                        dumps(n.config),
                        n.position_x,
                        n.position_y,
                    )
                    for n in body.nodes
                ],
            )
            if behaviour_changed:
                # Positions are layout: only a change of behaviour moves the version.
                conn.execute("DELETE FROM connections WHERE pipeline_id = ?", (pipeline_id,))
                conn.executemany(
                    "INSERT INTO connections VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            new_id(),
                            pipeline_id,
                            e.source_node_id,
                            e.target_node_id,
                            e.source_handle,
                            e.target_handle,
                        )
                        for e in body.edges
                    ],
                )
                conn.execute(
                    "UPDATE pipelines SET version = ?, updated_at = ? WHERE id = ?",
                    (pipeline["version"] + 1, iso(), pipeline_id),
                )
        return Response(status_code=204)

    def check_graph(
        conn: sqlite3.Connection, caller: auth.Principal, body: schemas.GraphIn
    ) -> None:
        """Every 422 rule of ``PUT /nodes`` at once, reported together."""
        errors: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        agent_ids = {n.agent_id for n in body.nodes if n.agent_id is not None}
        known: set[str] = set()
        if agent_ids:
            marks = ",".join("?" * len(agent_ids))
            known = {
                row["id"]
                for row in conn.execute(
                    f"SELECT id FROM agents WHERE organization_id = ? AND id IN ({marks})",
                    (caller.organization_id, *agent_ids),
                )
            }
        for index, node in enumerate(body.nodes):
            where: Loc = ("body", "nodes", index)
            if node.id in seen:
                errors.append(((*where, "id"), f"duplicate node id {node.id!r}"))
            seen.add(node.id)
            if node.agent_id is None:
                if node.node_type in ("agent", "supervisor"):
                    errors.append(
                        ((*where, "agent_id"), f"a {node.node_type} node needs an agent_id")
                    )
            elif node.agent_id not in known:
                errors.append(((*where, "agent_id"), f"unknown agent {node.agent_id!r}"))
        edges_seen: set[tuple[str, str, str | None, str | None]] = set()
        for index, edge in enumerate(body.edges):
            where = ("body", "edges", index)
            for end in ("source_node_id", "target_node_id"):
                if getattr(edge, end) not in seen:
                    errors.append(((*where, end), f"no node {getattr(edge, end)!r} in this graph"))
            key = (edge.source_node_id, edge.target_node_id, edge.source_handle, edge.target_handle)
            if key in edges_seen:
                errors.append((where, "duplicate edge"))
            edges_seen.add(key)
        if errors:
            raise invalid(errors)

    # ---- deployments ----

    def get_deployment(
        conn: sqlite3.Connection, caller: auth.Principal, deployment_id: str
    ) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM deployments WHERE id = ? AND organization_id = ?",
            (deployment_id, caller.organization_id),
        ).fetchone()
        if not isinstance(row, sqlite3.Row):
            raise not_found("Deployment")
        return row

    def gateway(conn: sqlite3.Connection, org_id: str, environment: str) -> str:
        row = conn.execute(
            "SELECT gateway_id FROM gateways WHERE organization_id = ? AND environment = ?",
            (org_id, environment),
        ).fetchone()
        if row is not None:
            return str(row["gateway_id"])
        gateway_id = f"gw-{environment}-{secrets.token_hex(4)}"
        conn.execute("INSERT INTO gateways VALUES (?, ?, ?)", (org_id, environment, gateway_id))
        return gateway_id

    def start_deployment(
        conn: sqlite3.Connection,
        caller: auth.Principal,
        pipeline: sqlite3.Row,
        version: int,
        environment: str,
        config: dict[str, Any],
        why: str,
    ) -> dict[str, Any]:
        deployment_id, now = new_id(), state.clock()
        # A newer deployment supersedes an unsettled one for the same slot.
        for old in conn.execute(
            "SELECT id FROM deployments WHERE pipeline_id = ? AND environment = ? "
            "AND status IN ('pending', 'deploying')",
            (pipeline["id"], environment),
        ).fetchall():
            conn.execute(
                "UPDATE deployments SET status = 'stopped', updated_at = ? WHERE id = ?",
                (iso(now), old["id"]),
            )
            log(
                conn, old["id"], "warn", f"Cancelled: superseded by deployment {deployment_id}", now
            )
        fail_reason = None
        pipeline_flag = json.loads(pipeline["config"]).get(FAILURE_FLAG)
        # true fails every environment; a list of environment names fails only those.
        if pipeline_flag is True or (
            isinstance(pipeline_flag, list) and environment in pipeline_flag
        ):
            fail_reason = f"pipeline config has {FAILURE_FLAG}: {json.dumps(pipeline_flag)}"
        elif config.get(FAILURE_FLAG) is True:
            fail_reason = f"deployment config has {FAILURE_FLAG}: true"
        stamp = iso(now)
        conn.execute(
            "INSERT INTO deployments VALUES "
            "(?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                deployment_id,
                caller.organization_id,
                pipeline["id"],
                version,
                environment,
                gateway(conn, caller.organization_id, environment),
                dumps(config),
                caller.user_id,
                stamp,
                stamp,
                now,
                state.faults.knobs.deploy_step_s,
                fail_reason,
            ),
        )
        log(
            conn,
            deployment_id,
            "info",
            f"{why}: pipeline {pipeline['name']!r} version {version} to {environment}",
            now,
        )
        return _deployment(get_deployment(conn, caller, deployment_id))

    @app.get(
        f"{API}/deployments",
        response_model=schemas.Page[schemas.DeploymentOut],
        tags=["deployments"],
        responses=E401,
    )
    def list_deployments(
        caller: Caller,
        lists: Lists,
        sort_by: TimeSort | None = None,
        environment: Environment | None = None,
        status: DeploymentStatus | None = None,
        pipeline_id: str | None = None,
    ) -> dict[str, Any]:
        query = ListQuery(sort_by=sort_by, **lists)
        filters: dict[str, object] = {
            "environment": environment,
            "status": status,
            "pipeline_id": pipeline_id,
        }
        with db.transaction() as conn:
            advance(conn, state.clock())
            return list_page(
                conn,
                "deployments",
                caller.organization_id,
                query,
                filters,
                _deployment,
                state.faults.knobs.page_size_cap,
                searchable=False,
            )

    @app.post(
        f"{API}/deployments",
        status_code=201,
        response_model=schemas.DeploymentOut,
        tags=["deployments"],
        responses=E401,
    )
    def deploy(caller: Caller, body: schemas.DeploymentCreate) -> dict[str, Any]:
        with db.transaction() as conn:
            pipeline = conn.execute(
                "SELECT * FROM pipelines WHERE id = ? AND organization_id = ?",
                (body.pipeline_id, caller.organization_id),
            ).fetchone()
            if pipeline is None:
                raise invalid([(("body", "pipeline_id"), f"no pipeline {body.pipeline_id!r}")])
            advance(conn, state.clock())
            return start_deployment(
                conn,
                caller,
                pipeline,
                pipeline["version"],
                body.environment,
                body.config,
                "Deploy",
            )

    @app.get(
        f"{API}/deployments/{{deployment_id}}",
        response_model=schemas.DeploymentOut,
        tags=["deployments"],
        responses=E404,
    )
    def read_deployment(caller: Caller, deployment_id: str) -> dict[str, Any]:
        with db.transaction() as conn:
            advance(conn, state.clock())
            return _deployment(get_deployment(conn, caller, deployment_id))

    @app.delete(
        f"{API}/deployments/{{deployment_id}}",
        status_code=204,
        tags=["deployments"],
        responses=E404,
    )
    def undeploy(caller: Caller, deployment_id: str) -> Response:
        with db.transaction() as conn:
            advance(conn, state.clock())
            row = get_deployment(conn, caller, deployment_id)
            if row["status"] in LIVE_STATUSES:
                now = state.clock()
                conn.execute(
                    "UPDATE deployments SET status = 'stopped', updated_at = ? WHERE id = ?",
                    (iso(now), deployment_id),
                )
                log(conn, deployment_id, "info", "Stopped by user (undeploy)", now)
        return Response(status_code=204)

    @app.get(
        f"{API}/deployments/{{deployment_id}}/logs",
        response_model=list[schemas.DeploymentLogOut],
        tags=["deployments"],
        responses=E404,
    )
    def deployment_logs(caller: Caller, deployment_id: str) -> list[dict[str, Any]]:
        with db.transaction() as conn:
            advance(conn, state.clock())
            get_deployment(conn, caller, deployment_id)
            rows = conn.execute(
                "SELECT timestamp, level, message FROM deployment_logs WHERE deployment_id = ? "
                "ORDER BY seq",
                (deployment_id,),
            )
            return [dict(row) for row in rows]

    @app.post(
        f"{API}/deployments/{{deployment_id}}/promote",
        status_code=201,
        response_model=schemas.DeploymentOut,
        tags=["deployments"],
        responses=E409,
    )
    def promote(caller: Caller, deployment_id: str, body: schemas.PromoteIn) -> dict[str, Any]:
        with db.transaction() as conn:
            advance(conn, state.clock())
            source = get_deployment(conn, caller, deployment_id)
            if source["status"] != "active":
                raise conflict(
                    f"only an active deployment can be promoted (it is {source['status']})"
                )
            if ENVIRONMENT_ORDER.index(body.target_environment) <= ENVIRONMENT_ORDER.index(
                source["environment"]
            ):
                raise conflict(
                    f"cannot promote from {source['environment']} to {body.target_environment}"
                )
            pipeline = get_pipeline(conn, caller, source["pipeline_id"])
            return start_deployment(
                conn,
                caller,
                pipeline,
                source["pipeline_version"],
                body.target_environment,
                json.loads(source["config"]),
                f"Promote of deployment {deployment_id}",
            )

    @app.post(
        f"{API}/deployments/{{deployment_id}}/rollback",
        status_code=201,
        response_model=schemas.DeploymentOut,
        tags=["deployments"],
        responses=E409,
    )
    def rollback(caller: Caller, deployment_id: str) -> dict[str, Any]:
        with db.transaction() as conn:
            advance(conn, state.clock())
            source = get_deployment(conn, caller, deployment_id)
            if source["status"] != "active" or source["replaced_id"] is None:
                raise conflict("rollback needs an active deployment that replaced another")
            replaced = get_deployment(conn, caller, source["replaced_id"])
            pipeline = get_pipeline(conn, caller, source["pipeline_id"])
            return start_deployment(
                conn,
                caller,
                pipeline,
                replaced["pipeline_version"],
                source["environment"],
                json.loads(replaced["config"]),
                f"Rollback of deployment {deployment_id}",
            )

    # ---- policies ----

    def get_policy(conn: sqlite3.Connection, caller: auth.Principal, policy_id: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM policies WHERE id = ? AND organization_id = ?",
            (policy_id, caller.organization_id),
        ).fetchone()
        if not isinstance(row, sqlite3.Row):
            raise not_found("Policy")
        return row

    @app.get(
        f"{API}/policies",
        response_model=schemas.Page[schemas.PolicyOut],
        tags=["policies"],
        responses=E401,
    )
    def list_policies(
        caller: Caller,
        lists: Lists,
        sort_by: NamedSort | None = None,
        effect: Effect | None = None,
        resource_type: str | None = None,
    ) -> dict[str, Any]:
        query = ListQuery(sort_by=sort_by, **lists)
        with db.transaction() as conn:
            return list_page(
                conn,
                "policies",
                caller.organization_id,
                query,
                {"effect": effect, "resource_type": resource_type},
                _policy,
                state.faults.knobs.page_size_cap,
            )

    @app.post(
        f"{API}/policies",
        status_code=201,
        response_model=schemas.PolicyOut,
        tags=["policies"],
        responses=E409_ONLY,
    )
    def create_policy(caller: Caller, body: schemas.PolicyCreate) -> dict[str, Any]:
        with db.transaction() as conn:
            _unique_name(conn, "policies", caller.organization_id, body.name, "")
            policy_id, now = new_id(), iso()
            conn.execute(
                "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    policy_id,
                    caller.organization_id,
                    body.name,
                    body.description,
                    body.effect,
                    body.resource_type,
                    dumps(body.actions),
                    dumps([c.model_dump() for c in body.conditions]),
                    caller.user_id,
                    now,
                    now,
                ),
            )
            return _policy(get_policy(conn, caller, policy_id))

    @app.get(
        f"{API}/policies/{{policy_id}}",
        response_model=schemas.PolicyOut,
        tags=["policies"],
        responses=E404,
    )
    def read_policy(caller: Caller, policy_id: str) -> dict[str, Any]:
        with db.transaction() as conn:
            return _policy(get_policy(conn, caller, policy_id))

    @app.patch(
        f"{API}/policies/{{policy_id}}",
        response_model=schemas.PolicyOut,
        tags=["policies"],
        responses=E409,
    )
    def patch_policy(caller: Caller, policy_id: str, body: schemas.PolicyPatch) -> dict[str, Any]:
        changes = patch_changes(body)
        with db.transaction() as conn:
            current = _policy(get_policy(conn, caller, policy_id))
            if not write_patch(
                conn,
                "policies",
                caller.organization_id,
                policy_id,
                current,
                changes,
                encode={"actions": dumps, "conditions": dumps},
            ):
                return current
            return _policy(get_policy(conn, caller, policy_id))

    @app.delete(f"{API}/policies/{{policy_id}}", status_code=204, tags=["policies"], responses=E404)
    def delete_policy(caller: Caller, policy_id: str) -> Response:
        with db.transaction() as conn:
            get_policy(conn, caller, policy_id)
            conn.execute("DELETE FROM policies WHERE id = ?", (policy_id,))
        return Response(status_code=204)

    if admin:
        add_admin_routes(app, state)
    return app


def _behaviour(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> tuple[object, object]:
    """What a graph does, without layout: compared to decide whether ``version`` moves."""
    node_map = {n["id"]: (n["node_type"], n["agent_id"], n["config"]) for n in nodes}
    edge_list = sorted(
        (
            e["source_node_id"],
            e["target_node_id"],
            e["source_handle"] or "",
            e["target_handle"] or "",
            e["source_handle"] is None,
            e["target_handle"] is None,
        )
        for e in edges
    )
    return node_map, edge_list


def add_admin_routes(app: FastAPI, state: ServerState) -> None:
    """Run-time fault knobs and the request log; outside /api/v1 so faults never touch them."""

    @app.get("/admin/faults", include_in_schema=False)
    def read_faults() -> dict[str, Any]:
        return state.faults.knobs.model_dump()

    @app.put("/admin/faults", include_in_schema=False)
    def put_faults(body: FaultPatch) -> dict[str, Any]:
        try:
            return state.faults.update(body.model_dump(exclude_unset=True)).model_dump()
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None

    @app.get("/admin/requests", include_in_schema=False)
    def read_requests() -> list[dict[str, Any]]:
        return [asdict(e) for e in state.faults.entries()]

    @app.delete("/admin/requests", status_code=204, include_in_schema=False)
    def clear_requests() -> Response:
        state.faults.clear()
        return Response(status_code=204)


def create_user(
    conn: sqlite3.Connection,
    email: str,
    password: str,
    full_name: str,
    organization_name: str | None,
) -> sqlite3.Row:
    """A new user in a new organization (CONTRACT: register always creates one)."""
    email = email.strip().casefold()
    if conn.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
        raise conflict("a user with this email already exists")
    org_id, user_id, now = new_id(), new_id(), iso()
    org_name = organization_name or f"{full_name or email.split('@')[0]}'s organization"
    conn.execute("INSERT INTO organizations VALUES (?, ?, ?)", (org_id, org_name, now))
    conn.execute(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?, 'owner', 1, ?)",
        (user_id, email, auth.hash_password(password), full_name, org_id, now),
    )
    row: sqlite3.Row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return row


def ensure_dev_user(state: ServerState, email: str, password: str | None) -> str | None:
    """Make sure the development user exists; return its password if one was generated.

    An explicit password always becomes the user's password. Without one, an
    existing user (from a ``--db`` file) keeps theirs, and a new one gets a
    generated password that the caller prints once.
    """
    with state.db.transaction() as conn:
        row = conn.execute("SELECT id FROM users WHERE email = ?", (email.casefold(),)).fetchone()
        if row is not None:
            if password is not None:
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?",
                    (auth.hash_password(password), row["id"]),
                )
            return None
        generated = None
        if password is None:
            generated = password = secrets.token_urlsafe(12)
        create_user(conn, email, password, "Development User", "Development")
        return generated


def build_asgi(state: ServerState, *, admin: bool = False) -> ASGIApp:
    """The app uvicorn serves: FastAPI behind the body guard, inside the fault middleware."""
    return FaultMiddleware(BodyGuard(create_app(state, admin=admin)), state.faults)
