"""The reference server's generic pieces: errors, lists, PATCH, and one CRUD router.

``NamedResource`` declares a resource identified by name within an organization
(agents, pipelines, policies: ``kaizenctl.server.resources``); ``add_named_routes``
serves its list, create, read, patch and delete as CONTRACT.md says, the same way
for each. What a resource adds (agent versions, pipeline graphs) is routed in
``kaizenctl.server.app``.
"""

import json
import math
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from kaizenctl.server import auth, schemas
from kaizenctl.server.db import Database
from kaizenctl.server.lifecycle import iso

API = "/api/v1"
Loc = Sequence[str | int]


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
        unique_name(conn, table, org_id, changed["name"], row_id)
    for column, to_column in (encode or {}).items():
        if column in changed:
            changed[column] = to_column(changed[column])
    changed["updated_at"] = iso()
    if bump_version:
        changed["version"] = current["version"] + 1
    assignments = ", ".join(f"{column} = ?" for column in changed)
    conn.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*changed.values(), row_id])
    return True


def unique_name(conn: sqlite3.Connection, table: str, org_id: str, name: str, own_id: str) -> None:
    row = conn.execute(
        f"SELECT id FROM {table} WHERE organization_id = ? AND name = ? AND id != ?",
        (org_id, name, own_id),
    ).fetchone()
    if row is not None:
        raise conflict(f"a {table[:-1]} named {name!r} already exists")


def from_row(
    row: sqlite3.Row,
    model: type[BaseModel],
    stored: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]],
) -> dict[str, Any]:
    """The ``model`` fields of ``row``, each stored column read back."""
    result = {key: row[key] for key in model.model_fields}
    for column, (_, from_column) in stored.items():
        if column in result:
            result[column] = from_column(result[column])
    return result


def _nothing_to_refuse(conn: sqlite3.Connection, row_id: str, now: float) -> None:
    return None


def _no_filters() -> dict[str, object]:
    return {}


@dataclass(frozen=True)
class NamedResource:
    """A resource of one table, named uniquely within an organization."""

    kind: str  # "Agent": how errors name it; lower-cased, its route names and id parameter
    table: str  # "agents": its table and its path under /api/v1
    # Its answer, create body and PATCH body.
    models: tuple[type[BaseModel], type[schemas.Body], type[schemas.Patch]]
    # Columns not stored as they are sent: column -> (to the column, from the column).
    stored: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = field(
        default_factory=dict
    )
    # A FastAPI dependency: the resource's own list filters, column -> value (None: any).
    filters: Callable[..., dict[str, object]] = _no_filters
    # The resource counts versions: a create starts at 1, a PATCH that changes moves it.
    versioned: bool = False
    # Raise (409) when the row may not be deleted now.
    refuse_delete: Callable[[sqlite3.Connection, str, float], None] = _nothing_to_refuse
    # Tables whose rows go with it: (table, column holding its id).
    delete_with: tuple[tuple[str, str], ...] = ()
    delete_responses: dict[int | str, dict[str, Any]] = field(default_factory=lambda: E409)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def encode(self) -> dict[str, Callable[[Any], Any]]:
        return {column: to_column for column, (to_column, _) in self.stored.items()}

    def to_json(self, row: sqlite3.Row) -> dict[str, Any]:
        """A row as the resource's answer."""
        return from_row(row, self.models[0], self.stored)

    @property
    def path(self) -> str:
        return f"{API}/{self.table}"

    def get(self, conn: sqlite3.Connection, caller: auth.Principal, row_id: str) -> sqlite3.Row:
        """The caller's organization's row, else a 404."""
        row = conn.execute(
            f"SELECT * FROM {self.table} WHERE id = ? AND organization_id = ?",
            (row_id, caller.organization_id),
        ).fetchone()
        if not isinstance(row, sqlite3.Row):
            raise not_found(self.kind)
        return row

    def insert(self, conn: sqlite3.Connection, caller: auth.Principal, body: schemas.Body) -> str:
        values = body.model_dump()
        unique_name(conn, self.table, caller.organization_id, values["name"], "")
        row_id, now = new_id(), iso()
        for column, (to_column, _) in self.stored.items():
            values[column] = to_column(values[column])
        if self.versioned:
            values["version"] = 1
        columns = {
            "id": row_id,
            "organization_id": caller.organization_id,
            **values,
            "created_by_id": caller.user_id,
            "created_at": now,
            "updated_at": now,
        }
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        conn.execute(f"INSERT INTO {self.table} ({names}) VALUES ({marks})", list(columns.values()))
        return row_id


def add_named_routes(
    app: FastAPI,
    resource: NamedResource,
    *,
    db: Database,
    principal: Callable[..., auth.Principal],
    page_size_cap: Callable[[], int | None],
    clock: Callable[[], float],
) -> None:
    """List, create, read, PATCH and DELETE of ``resource``, as CONTRACT.md says."""
    Caller = Annotated[auth.Principal, Depends(principal)]
    Lists = Annotated[dict[str, Any], Depends(list_query)]
    Filters = Annotated[dict[str, object], Depends(resource.filters)]
    ItemId = Annotated[str, PathParam(alias=f"{resource.singular}_id")]
    item_path = f"{resource.path}/{{{resource.singular}_id}}"
    tags: list[str | Any] = [resource.table]

    def list_items(
        caller: Caller, lists: Lists, filters: Filters, sort_by: NamedSort | None = None
    ) -> dict[str, Any]:
        query = ListQuery(sort_by=sort_by, **lists)
        with db.transaction() as conn:
            return list_page(
                conn,
                resource.table,
                caller.organization_id,
                query,
                filters,
                resource.to_json,
                page_size_cap(),
            )

    def create_item(caller: Caller, body: schemas.Body) -> dict[str, Any]:
        with db.transaction() as conn:
            row_id = resource.insert(conn, caller, body)
            return resource.to_json(resource.get(conn, caller, row_id))

    def read_item(caller: Caller, item_id: ItemId) -> dict[str, Any]:
        with db.transaction() as conn:
            return resource.to_json(resource.get(conn, caller, item_id))

    def patch_item(caller: Caller, item_id: ItemId, body: schemas.Patch) -> dict[str, Any]:
        changes = patch_changes(body)
        with db.transaction() as conn:
            current = resource.to_json(resource.get(conn, caller, item_id))
            if not write_patch(
                conn,
                resource.table,
                caller.organization_id,
                item_id,
                current,
                changes,
                encode=resource.encode,
                bump_version=resource.versioned,
            ):
                return current  # a no-op PATCH changes nothing, not even a version
            return resource.to_json(resource.get(conn, caller, item_id))

    def delete_item(caller: Caller, item_id: ItemId) -> Response:
        with db.transaction() as conn:
            resource.get(conn, caller, item_id)
            resource.refuse_delete(conn, item_id, clock())
            for table, column in resource.delete_with:
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (item_id,))
            conn.execute(f"DELETE FROM {resource.table} WHERE id = ?", (item_id,))
        return Response(status_code=204)

    # FastAPI reads the body models from the signatures; they are this resource's.
    out, create_model, patch_model = resource.models
    create_item.__annotations__["body"] = create_model
    patch_item.__annotations__["body"] = patch_model
    name, plural = resource.singular, resource.table
    app.get(
        resource.path,
        response_model=schemas.Page[out],  # type: ignore[valid-type]
        tags=tags,
        responses=E401,
        name=f"list_{plural}",
    )(list_items)
    app.post(
        resource.path,
        status_code=201,
        response_model=out,
        tags=tags,
        responses=E409_ONLY,
        name=f"create_{name}",
    )(create_item)
    app.get(item_path, response_model=out, tags=tags, responses=E404, name=f"read_{name}")(
        read_item
    )
    app.patch(item_path, response_model=out, tags=tags, responses=E409, name=f"patch_{name}")(
        patch_item
    )
    app.delete(
        item_path,
        status_code=204,
        tags=tags,
        responses=resource.delete_responses,
        name=f"delete_{name}",
    )(delete_item)
