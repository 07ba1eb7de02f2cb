"""The FastAPI application: every endpoint and rule of CONTRACT.md.

No ``from __future__ import annotations`` here: FastAPI reads the route
signatures at run time, and some annotations name aliases local to create_app.

Agents, pipelines and policies are declared in ``kaizenctl.server.resources``
and served by one generic router (``kaizenctl.server.crud``); this module adds
auth, agent versions, pipeline graphs, deployments and the admin endpoints.

Endpoints are synchronous and each runs its whole work inside one
``Database.transaction()``: the lock makes requests serial, the transaction
makes each all-or-nothing. Every query is scoped to the caller's organization,
so another organization's id is simply "not found".
"""

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from fastapi import Body as BodyParam
from fastapi import Depends, FastAPI, Form, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.types import ASGIApp

from kaizenctl.api.models import DeploymentStatus, Environment
from kaizenctl.server import auth, schemas
from kaizenctl.server.bodies import BodyGuard
from kaizenctl.server.crud import (
    API,
    E401,
    E404,
    E409,
    E409_ONLY,
    ListQuery,
    Loc,
    TimeSort,
    add_named_routes,
    conflict,
    dumps,
    from_row,
    invalid,
    list_page,
    list_query,
    new_id,
    not_found,
)
from kaizenctl.server.db import Database
from kaizenctl.server.faults import FaultMiddleware, FaultPatch, FaultState
from kaizenctl.server.lifecycle import ENVIRONMENT_ORDER, LIVE_STATUSES, advance, iso, log
from kaizenctl.server.resources import AGENTS, NAMED_RESOURCES, PIPELINES

FAILURE_FLAG = "simulate_deploy_failure"


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


# ---- rows as JSON ----

JSON_TEXT = (dumps, json.loads)


def _node(row: sqlite3.Row) -> dict[str, Any]:
    return from_row(row, schemas.NodeOut, {"config": JSON_TEXT})


def _connection(row: sqlite3.Row) -> dict[str, Any]:
    return from_row(row, schemas.ConnectionOut, {})


def _deployment(row: sqlite3.Row) -> dict[str, Any]:
    return from_row(row, schemas.DeploymentOut, {"config": JSON_TEXT})


def _user(row: sqlite3.Row) -> dict[str, Any]:
    return from_row(row, schemas.UserOut, {"is_active": (int, bool)})


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

    # ---- agents, pipelines, policies: one generic router ----

    for resource in NAMED_RESOURCES:
        add_named_routes(
            app,
            resource,
            db=db,
            principal=principal,
            page_size_cap=lambda: state.faults.knobs.page_size_cap,
            clock=state.clock,
        )

    # ---- agent versions ----

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
            AGENTS.get(conn, caller, agent_id)
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
            agent = AGENTS.to_json(AGENTS.get(conn, caller, agent_id))
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

    # ---- pipeline graphs ----

    def graph_part(
        table: str, convert: Callable[[sqlite3.Row], dict[str, Any]]
    ) -> Callable[..., list[dict[str, Any]]]:
        def list_part(caller: Caller, pipeline_id: str) -> list[dict[str, Any]]:
            with db.transaction() as conn:
                PIPELINES.get(conn, caller, pipeline_id)
                rows = conn.execute(f"SELECT * FROM {table} WHERE pipeline_id = ?", (pipeline_id,))
                return [convert(row) for row in rows]

        return list_part

    for part, model, convert in (
        ("nodes", schemas.NodeOut, _node),
        ("connections", schemas.ConnectionOut, _connection),
    ):
        app.get(
            f"{API}/pipelines/{{pipeline_id}}/{part}",
            response_model=list[model],  # type: ignore[valid-type]
            tags=["pipelines"],
            responses=E404,
            name=f"list_{part}",
        )(graph_part(part, convert))

    @app.put(
        f"{API}/pipelines/{{pipeline_id}}/nodes",
        status_code=204,
        tags=["pipelines"],
        responses=E404,
    )
    def put_graph(caller: Caller, pipeline_id: str, body: schemas.GraphIn) -> Response:
        with db.transaction() as conn:
            pipeline = PIPELINES.get(conn, caller, pipeline_id)
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

    @contextmanager
    def callers_deployment(
        caller: auth.Principal, deployment_id: str
    ) -> Iterator[tuple[sqlite3.Connection, sqlite3.Row]]:
        """In one transaction, with deployments advanced to now: the caller's deployment."""
        with db.transaction() as conn:
            advance(conn, state.clock())
            yield conn, get_deployment(conn, caller, deployment_id)

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

    def redeploy(
        conn: sqlite3.Connection,
        caller: auth.Principal,
        source: sqlite3.Row,
        *,
        running: sqlite3.Row,
        environment: str,
        why: str,
    ) -> dict[str, Any]:
        """A new deployment of ``source``'s pipeline to ``environment``, of the version and
        config that ``running`` runs (the source itself for a promote; for a rollback, the
        deployment it replaced)."""
        pipeline = PIPELINES.get(conn, caller, source["pipeline_id"])
        return start_deployment(
            conn,
            caller,
            pipeline,
            running["pipeline_version"],
            environment,
            json.loads(running["config"]),
            why,
        )

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
        with callers_deployment(caller, deployment_id) as (_, row):
            return _deployment(row)

    @app.delete(
        f"{API}/deployments/{{deployment_id}}",
        status_code=204,
        tags=["deployments"],
        responses=E404,
    )
    def undeploy(caller: Caller, deployment_id: str) -> Response:
        with callers_deployment(caller, deployment_id) as (conn, row):
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
        with callers_deployment(caller, deployment_id) as (conn, _):
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
        with callers_deployment(caller, deployment_id) as (conn, source):
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
            return redeploy(
                conn,
                caller,
                source,
                running=source,
                environment=body.target_environment,
                why=f"Promote of deployment {deployment_id}",
            )

    @app.post(
        f"{API}/deployments/{{deployment_id}}/rollback",
        status_code=201,
        response_model=schemas.DeploymentOut,
        tags=["deployments"],
        responses=E409,
    )
    def rollback(caller: Caller, deployment_id: str) -> dict[str, Any]:
        with callers_deployment(caller, deployment_id) as (conn, source):
            if source["status"] != "active" or source["replaced_id"] is None:
                raise conflict("rollback needs an active deployment that replaced another")
            return redeploy(
                conn,
                caller,
                source,
                running=get_deployment(conn, caller, source["replaced_id"]),
                environment=source["environment"],
                why=f"Rollback of deployment {deployment_id}",
            )

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
