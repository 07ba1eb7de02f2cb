"""The dialect of the shipped Kaizen Studio backend (Integrum-Global/kaizen-studio, ``/api/v1``).

It implements ``kaizenctl.api.service.KaizenApi`` over an ``ApiSession`` and
parses this server's wire shapes into the dialect-independent models, so that
nothing above this layer can tell which server it talks to (except through
``capabilities``). Every decision is written down in docs/dialects.md; the
ones that shape the code:

* Scope: one organization (the logged-in user's) and one workspace (the
  ``--workspace`` setting, by name). Agents and pipelines are listed in that
  workspace only; policies belong to the organization. Every record read is
  checked against the organization — this server lets other organizations'
  pipelines through — and a foreign one is never managed, diffed or exported.
* Deleting archives: archived agents and pipelines stay listed, so they are left
  out of every list (archived = absent).
* Lists page with ``limit``/``offset``; ``total`` is only the page's length, so
  paging stops at the first short page.
* Node ids are global on this server: a node is stored under an id derived from
  its pipeline and manifest id, with the manifest id as its ``label``; read back,
  the label is the node id again. A graph write is neither atomic nor honest
  about failures, so every write is read back and compared.
* Wire-only encodings are undone on read: float32 temperatures, ``""``/``0`` for
  unset, JSON text (including ``"None"``) for configs and conditions, the
  default handles ``output``/``input``, ``supervisor`` for ``supervisor_worker``.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import uuid
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import httpx

from kaizenctl.api.capabilities import STUDIO_CAPABILITIES, Capabilities
from kaizenctl.api.contract_v1 import AuthV1
from kaizenctl.api.crud import (
    DialectApi,
    create_numbered_at_most_once,
    path_segment,
    the_one_named,
)
from kaizenctl.api.errors import (
    ApiError,
    NotFoundError,
    PermissionDeniedError,
    ResponseFormatError,
)
from kaizenctl.api.gateways import StudioRollout
from kaizenctl.api.httplog import http_logger
from kaizenctl.api.models import (
    Agent,
    AgentVersion,
    AuthTokens,
    Deployment,
    DeploymentLog,
    Graph,
    Pipeline,
    PipelineConnection,
    PipelineNode,
    Policy,
    PolicyCondition,
    User,
)
from kaizenctl.api.records import RECORD_DESCRIPTION, RECORD_PREFIX, ServerRecord, is_record_name
from kaizenctl.api.retry import create_at_most_once
from kaizenctl.api.session import ApiSession, QueryParams
from kaizenctl.errors import UsageError

API_PREFIX = "/api/v1"
# The server's maximum page (101 answers 422). Its ``total`` is the page length, so a
# page shorter than this is the last one.
PAGE_LIMIT = 100
# Answers GET without a token on this server only: the dialect probe (kaizenctl.api.connect).
PROBE_PATH = "/pipelines/patterns"

# Node ids are derived from (pipeline id, manifest node id) in this namespace, so two
# pipelines that both have a node `lead` never collide in the server's global id space.
NODE_ID_NAMESPACE = uuid.UUID("6f1c9a52-3b7e-4f0e-9d0b-2a1c5e7f9b31")
# What a node id must look like to be read back as a manifest id.
_NODE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

DEFAULT_AGENT_TYPE = "chat"
DEFAULT_SOURCE_HANDLE = "output"
DEFAULT_TARGET_HANDLE = "input"
# Manifest pattern -> this server's name for it (the rest are the same word).
PATTERN_TO_WIRE = {"supervisor_worker": "supervisor"}
PATTERN_FROM_WIRE = {wire: manifest for manifest, wire in PATTERN_TO_WIRE.items()}
ARCHIVED = "archived"
# A condition's attribute is a dotted path into one of these; a bare one is the resource's.
CONDITION_ROOTS = ("user.", "context.")
RESOURCE_ROOT = "resource."

_log = http_logger()
T = TypeVar("T")


# ---- wire value helpers ---------------------------------------------------------------


def float32(value: float) -> float:
    """The shortest decimal that names the same 32-bit float: 0.30000001192092896 -> 0.3.

    The server stores temperatures as float32 and reads them back widened; this is
    the value a person wrote.
    """
    packed = struct.pack("<f", value)
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def json_text(value: Any, *, method: str, path: str) -> Any:
    """A config or condition as data: the server stores them as JSON text, unset as ``"None"``."""
    if value is None or value in ("", "None", "null"):
        return {}
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ResponseFormatError(
                method, path, 200, f"a stored JSON value is not JSON: {value[:60]!r}"
            ) from None
    return value


def node_wire_id(pipeline_id: str, manifest_id: str) -> str:
    """The server-side id of a manifest node: stable per pipeline, unique across pipelines."""
    return str(uuid.uuid5(NODE_ID_NAMESPACE, f"{pipeline_id}/{manifest_id}"))


def error_detail(body: Any) -> Any:
    """This server's error body as a ``detail`` for ``kaizenctl.api.errors``.

    ``{"error": {"code", "message", "details": {"errors": [{field, message}]}}}``;
    a 429 is ``{"error": "rate_limit_exceeded", "message": ...}``.
    """
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str):
        return str(body.get("message") or error)
    if not isinstance(error, dict):
        return body.get("detail")
    message = str(error.get("message") or error.get("code") or "")
    details = error.get("details")
    items = details.get("errors") if isinstance(details, dict) else None
    if isinstance(items, list) and items:
        problems = []
        for item in items:
            if not isinstance(item, dict):
                continue
            field = str(item.get("field") or "")
            for root in ("body.", "query.", "path."):
                if field.startswith(root):
                    field = field[len(root) :]
            text = str(item.get("message") or "invalid")
            problems.append(f"{field}: {text}" if field else text)
        if problems:
            return "; ".join(problems)
    return message


def _object(data: Any, response: httpx.Response, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ResponseFormatError.of(response, f"expected {what} as an object")
    return data


def _field(data: dict[str, Any], name: str, response: httpx.Response) -> Any:
    if name not in data:
        raise ResponseFormatError.of(response, f"{name}: Field required")
    return data[name]


class _NotHeld(Exception):
    """A field value this server cannot hold: refused before anything is sent."""


# A contract field -> (this server's name for it, its value as this server wants it). A field
# not listed is not sent (the server has no such field, or it is written on its own).
_WireFields = Mapping[str, tuple[str, Callable[[Any], Any]]]


def _as_is(value: Any) -> Any:
    return value


def _text_or_unset(value: Any) -> Any:
    """``""`` is how this server says "unset" (and a null description answers 500)."""
    return value or ""


def _to_wire(fields: dict[str, Any], wire: _WireFields, method: str, path: str) -> dict[str, Any]:
    """Contract field names and values -> this server's, for a create or an update."""
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if name in wire:
            wire_name, convert = wire[name]
            try:
                body[wire_name] = convert(value)
            except _NotHeld as refusal:
                raise ApiError(method, path, None, str(refusal)) from None
    return body


def _text_or_none(value: Any) -> str | None:
    """``""`` is how this server says "unset"; a manifest says null."""
    return None if value in (None, "") else str(value)


# ---- scope: organization and workspace --------------------------------------------------


class _Scope:
    """The caller's organization and the managed workspace, each looked up once."""

    def __init__(self, session: ApiSession, workspace_name: str) -> None:
        self.session = session
        self.workspace_name = workspace_name
        self._organization_id: str | None = None
        self._workspace_id: str | None = None
        self._workspace_looked_up = False
        self._lock = asyncio.Lock()
        self.me: Callable[[], Awaitable[User]] | None = None

    def know_organization(self, organization_id: str) -> None:
        self._organization_id = organization_id

    async def organization_id(self) -> str:
        if self._organization_id is None:
            assert self.me is not None
            self._organization_id = (await self.me()).organization_id
        return self._organization_id

    async def workspace_id(self) -> str | None:
        """The workspace's id, None while it does not exist (plan reads it as empty)."""
        async with self._lock:
            if not self._workspace_looked_up:
                self._workspace_id = await self._find_workspace()
                self._workspace_looked_up = True
            return self._workspace_id

    async def _find_workspace(self) -> str | None:
        response = await self.session.request("GET", "/workspaces")
        data = self.session.decode(response)
        if not isinstance(data, list):
            raise ResponseFormatError(
                "GET", self.session.full_path("/workspaces"), 200, "expected a list of workspaces"
            )
        found = the_one_named(
            [
                item
                for item in data
                if isinstance(item, dict)
                and item.get("name") == self.workspace_name
                and not item.get("isArchived")
            ],
            self.workspace_name,
            kind="workspace",
            shown_path=self.session.full_path("/workspaces"),
            id_of=lambda item: str(item.get("id")),
        )
        return str(found["id"]) if found is not None else None

    async def ensure_workspace(self) -> str:
        """The workspace's id, creating it first when it is missing (apply only)."""
        existing = await self.workspace_id()
        if existing is not None:
            return existing
        async with self._lock:
            if self._workspace_id is not None:
                return self._workspace_id

            async def send() -> str:
                response = await self.session.request(
                    "POST", "/workspaces", json={"name": self.workspace_name}
                )
                data = _object(self.session.decode(response), response, "a workspace")
                return str(_field(data, "id", response))

            async def find() -> str | None:
                return await self._find_workspace()

            _log.info("creating workspace %r", self.workspace_name)
            self._workspace_id = await create_at_most_once(self.session.policy, send, find)
            return self._workspace_id

    async def check_organization(
        self, record: dict[str, Any], kind: str, method: str, path: str
    ) -> None:
        """Refuse a record of another organization: this server does not always."""
        ours = await self.organization_id()
        theirs = record.get("organization_id")
        if theirs != ours:
            raise NotFoundError(
                method,
                path,
                None,
                f"{kind} {record.get('id')} belongs to another organization; kaizenctl "
                "never manages, diffs or exports it",
            )

    async def is_ours(self, record: dict[str, Any], *, in_workspace: bool) -> bool:
        if record.get("organization_id") != await self.organization_id():
            return False
        return not in_workspace or record.get("workspace_id") == await self.workspace_id()


def _not_ours_on_403(error: ApiError) -> ApiError:
    """403 for an id is this server's "another organization's": to kaizenctl, not found."""
    if isinstance(error, PermissionDeniedError):
        return NotFoundError(
            error.method,
            error.path,
            error.status,
            f"{error.detail} (another organization's; not ours)",
        )
    return error


async def _request_by_id(
    session: ApiSession, method: str, path: str, **options: Any
) -> httpx.Response:
    """A request about one id; a 403 for it means another organization's (``_not_ours_on_403``)."""
    try:
        return await session.request(method, path, **options)
    except ApiError as error:
        raise _not_ours_on_403(error) from None


class _StudioResource(Generic[T]):
    """What agents, pipelines and policies share here: the records of one organization, read
    by id (a foreign one refused) or found by an exact name (two of one name refused).

    A subclass sets ``kind`` (for messages), ``path``, ``noun`` / ``a_noun`` (how a record is
    named in errors), ``envelope`` when an item's answer wraps the record, ``listed_whole``
    when a listed record holds every field, and implements ``_records`` (the listed records
    kaizenctl manages) and ``_parse`` (a record as the dialect-independent model).
    """

    kind = ""
    path = ""
    noun = ""
    a_noun = ""
    # The key under which an item answer holds the record (pipelines: "data"); None: the answer.
    envelope: str | None = None
    # A listed record has every field (policies): one found by name is not read again. Else
    # (agents: no tools in a list record) it is read by id.
    listed_whole = False

    def __init__(self, session: ApiSession, scope: _Scope) -> None:
        self.session = session
        self.scope = scope

    def _item_path(self, item_id: str) -> str:
        return f"{self.path}/{path_segment(item_id)}"

    @abstractmethod
    async def _records(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _parse(self, data: dict[str, Any], response: httpx.Response) -> T: ...

    def _parse_listed(self, record: dict[str, Any]) -> T:
        return self._parse(record, _stub_response("GET", self.session.full_path(self.path)))

    def _record_of(self, response: httpx.Response) -> dict[str, Any]:
        """The record an item answer (a read, a create, an update) holds."""
        data = _object(
            self.session.decode(response), response, "an answer" if self.envelope else self.a_noun
        )
        if self.envelope is not None:
            data = _object(data.get(self.envelope), response, self.a_noun)
        return data

    async def _read(self, item_id: str) -> tuple[dict[str, Any], httpx.Response]:
        """One record by id, checked to be this organization's."""
        response = await _request_by_id(self.session, "GET", self._item_path(item_id))
        data = self._record_of(response)
        await self.scope.check_organization(data, self.noun, "GET", response.request.url.path)
        return data, response

    async def get(self, item_id: str) -> T:
        data, response = await self._read(item_id)
        return self._parse(data, response)

    async def _found(self, record: dict[str, Any]) -> T:
        if self.listed_whole:
            return self._parse_listed(record)
        return await self.get(str(record["id"]))

    async def find_by_name(self, name: str) -> T | None:
        found = the_one_named(
            [r for r in await self._records() if r.get("name") == name],
            name,
            kind=self.kind,
            shown_path=self.session.full_path(self.path),
            id_of=lambda record: str(record.get("id")),
        )
        return await self._found(found) if found is not None else None

    async def _create_once(self, name: Any, body: dict[str, Any]) -> T:
        """POST ``body``; a lost answer is resolved by looking ``name`` up, never by re-posting."""

        async def send() -> T:
            response = await self.session.request("POST", self.path, json=body)
            return self._parse(self._record_of(response), response)

        async def find() -> T | None:
            return await self.find_by_name(name) if isinstance(name, str) else None

        return await create_at_most_once(self.session.policy, send, find)


# ---- lists ----------------------------------------------------------------------------


async def _list_pages(
    session: ApiSession, path: str, key: str, params: QueryParams | None = None
) -> list[dict[str, Any]]:
    """Every record of a ``limit``/``offset`` list, until a page shorter than the limit."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    offset = 0
    while True:
        response = await session.request(
            "GET", path, params={**(params or {}), "limit": PAGE_LIMIT, "offset": offset}
        )
        data = _object(session.decode(response), response, "a list")
        page = data.get(key)
        if not isinstance(page, list):
            raise ResponseFormatError(
                "GET", session.full_path(path), response.status_code, f"not a list: {key}: missing"
            )
        for item in page:
            if not isinstance(item, dict):
                raise ResponseFormatError(
                    "GET",
                    session.full_path(path),
                    response.status_code,
                    "a record is not an object",
                )
            # Records shift between pages when the list changes mid-read; keep one of each.
            item_id = str(item.get("id"))
            if item_id not in seen:
                seen.add(item_id)
                records.append(item)
        if len(page) < PAGE_LIMIT:
            return records
        offset += len(page)


# ---- agents ---------------------------------------------------------------------------


def _agent(data: dict[str, Any], tools: list[str], response: httpx.Response) -> Agent:
    status = data.get("status")
    agent_type = data.get("agent_type")
    max_tokens = data.get("max_tokens")
    temperature = data.get("temperature")
    return Agent(
        id=str(_field(data, "id", response)),
        name=str(_field(data, "name", response)),
        description=_text_or_none(data.get("description")),
        system_prompt=str(data.get("system_prompt") or ""),
        provider=None,
        model=str(_field(data, "model_id", response)),
        temperature=float32(float(temperature)) if temperature is not None else 0.7,
        max_tokens=int(max_tokens) if max_tokens else None,
        tools=tools,
        is_active=status == "active",
        agent_type=None if agent_type in (None, DEFAULT_AGENT_TYPE) else str(agent_type),
        organization_id=str(data.get("organization_id") or ""),
        created_at=str(data.get("created_at") or ""),
        updated_at=str(data.get("updated_at") or ""),
    )


# Contract field -> (this server's name, the value as it stores it); nulls become its unset.
_AGENT_WIRE: _WireFields = {
    "name": ("name", _as_is),
    "description": ("description", _text_or_unset),
    "system_prompt": ("system_prompt", _text_or_unset),
    "model": ("model_id", _as_is),
    "temperature": ("temperature", _as_is),
    "max_tokens": ("max_tokens", lambda value: value or 0),
}


class StudioAgents(_StudioResource[Agent]):
    kind = "Agent"
    path = "/agents"
    noun = "agent"
    a_noun = "an agent"

    async def _records(self) -> list[dict[str, Any]]:
        workspace_id = await self.scope.workspace_id()
        if workspace_id is None:
            return []
        records = await _list_pages(
            self.session, self.path, "records", {"workspace_id": workspace_id}
        )
        return [
            r
            for r in records
            if r.get("status") != ARCHIVED and await self.scope.is_ours(r, in_workspace=True)
        ]

    async def list_all(self) -> list[Agent]:
        # List records carry no tools: each agent is read once for them.
        records = await self._records()
        return list(await asyncio.gather(*(self.get(str(r["id"])) for r in records)))

    def _parse(self, data: dict[str, Any], response: httpx.Response) -> Agent:
        tools = data.get("tools") or []
        names = sorted({str(t.get("name")) for t in tools if isinstance(t, dict)})
        return _agent(data, names, response)

    async def create(self, fields: dict[str, Any]) -> Agent:
        workspace_id = await self.scope.ensure_workspace()
        body = {
            **_to_wire(fields, _AGENT_WIRE, "POST", self.session.full_path(self.path)),
            "workspace_id": workspace_id,
            "agent_type": fields.get("agent_type") or DEFAULT_AGENT_TYPE,
        }
        name = fields.get("name")

        async def send() -> str:
            response = await self.session.request("POST", self.path, json=body)
            data = _object(self.session.decode(response), response, "an agent")
            return str(_field(data, "id", response))

        async def find() -> str | None:
            found = await self.find_by_name(name) if isinstance(name, str) else None
            return found.id if found else None

        agent_id = await create_at_most_once(self.session.policy, send, find)
        # Tools and status are not part of a create on this server: converge them after.
        await self._converge(
            agent_id, tools=fields.get("tools") or [], is_active=fields.get("is_active", True)
        )
        return await self.get(agent_id)

    async def update(self, agent_id: str, changes: dict[str, Any]) -> Agent:
        if "agent_type" in changes:
            raise ApiError(
                "PUT",
                self.session.full_path(self._item_path(agent_id)),
                None,
                "this server cannot change an agent's agent_type; the plan must replace it",
            )
        body = _to_wire(
            changes, _AGENT_WIRE, "PUT", self.session.full_path(self._item_path(agent_id))
        )
        if body:
            await self.session.request("PUT", self._item_path(agent_id), json=body)
        await self._converge(
            agent_id, tools=changes.get("tools"), is_active=changes.get("is_active")
        )
        return await self.get(agent_id)

    async def _converge(
        self, agent_id: str, *, tools: list[str] | None, is_active: bool | None
    ) -> None:
        """Make the agent's tools and status what was asked, from what it has now.

        Reads before writing, so a retry after a lost answer never adds a tool twice.
        """
        if tools is not None:
            data, _ = await self._read(agent_id)
            have = [t for t in data.get("tools") or [] if isinstance(t, dict)]
            wanted = set(tools)
            kept: set[str] = set()
            for tool in have:
                name = str(tool.get("name"))
                if name in wanted and name not in kept:
                    kept.add(name)
                    continue
                # Not wanted, or a second tool of one name (names are not unique here).
                await self.session.request(
                    "DELETE",
                    f"{self._item_path(agent_id)}/tools/{path_segment(str(tool.get('id')))}",
                    missing_ok_on_retry=True,
                )
            for name in sorted(wanted - kept):
                await self._add_tool(agent_id, name)
        if is_active is not None:
            status = "active" if is_active else "draft"
            await self.session.request("PUT", self._item_path(agent_id), json={"status": status})

    async def _add_tool(self, agent_id: str, name: str) -> None:
        path = f"{self._item_path(agent_id)}/tools"

        async def send() -> str:
            # A manifest names a tool only; this server also wants a type and a description.
            body = {"tool_type": "function", "name": name, "description": name, "config": {}}
            response = await self.session.request("POST", path, json=body)
            return str(_object(self.session.decode(response), response, "a tool").get("id"))

        async def find() -> str | None:
            data, _ = await self._read(agent_id)
            for tool in data.get("tools") or []:
                if isinstance(tool, dict) and tool.get("name") == name:
                    return str(tool.get("id"))
            return None

        await create_at_most_once(self.session.policy, send, find)

    async def delete(self, agent_id: str) -> None:
        # Archives it; it stays listed as archived, which every list here leaves out.
        await _request_by_id(
            self.session, "DELETE", self._item_path(agent_id), missing_ok_on_retry=True
        )

    async def list_versions(self, agent_id: str) -> list[AgentVersion]:
        response = await self.session.request("GET", f"{self._item_path(agent_id)}/versions")
        data = self.session.decode(response)
        if not isinstance(data, list):
            raise ResponseFormatError(
                "GET", response.request.url.path, response.status_code, "expected a list"
            )
        return [_version(item, response) for item in data if isinstance(item, dict)]

    async def create_version(self, agent_id: str) -> AgentVersion:
        path = f"{self._item_path(agent_id)}/versions"

        async def send() -> AgentVersion:
            # This server wants a JSON body, even an empty one.
            response = await self.session.request("POST", path, json={})
            return _version(_object(self.session.decode(response), response, "a version"), response)

        return await create_numbered_at_most_once(
            self.session.policy, lambda: self.list_versions(agent_id), lambda v: v.version, send
        )


def _version(data: dict[str, Any], response: httpx.Response) -> AgentVersion:
    snapshot = json_text(
        data.get("config_snapshot"), method=response.request.method, path=response.request.url.path
    )
    return AgentVersion(
        id=str(_field(data, "id", response)),
        agent_id=str(data.get("agent_id") or ""),
        version=int(_field(data, "version_number", response)),
        snapshot=snapshot if isinstance(snapshot, dict) else {},
        created_at=str(data.get("created_at") or ""),
        created_by_id=str(data.get("created_by") or ""),
    )


# ---- pipelines ------------------------------------------------------------------------


def _pipeline(data: dict[str, Any], response: httpx.Response) -> Pipeline:
    pattern = str(_field(data, "pattern", response))
    return Pipeline(
        id=str(_field(data, "id", response)),
        name=str(_field(data, "name", response)),
        description=_text_or_none(data.get("description")),
        status=str(data.get("status") or "draft"),
        pattern=PATTERN_FROM_WIRE.get(pattern, pattern),
        # Not stored by this server: always empty (a non-empty one is refused at plan).
        config={},
        # No version counter here; deployments, which would need one, are not supported.
        version=1,
        organization_id=str(data.get("organization_id") or ""),
        created_at=str(data.get("created_at") or ""),
        updated_at=str(data.get("updated_at") or ""),
    )


# Pipeline statuses the manifests know; this server stores any string, so the client checks.
PIPELINE_STATUSES = frozenset({"draft", "active"})


def _pipeline_status(value: Any) -> Any:
    if value not in PIPELINE_STATUSES:
        # The server would store anything, even "bogus"; archived means deleted here.
        raise _NotHeld(
            f"pipeline status {value!r} is not one of " + ", ".join(sorted(PIPELINE_STATUSES))
        )
    return value


_PIPELINE_WIRE: _WireFields = {
    "name": ("name", _as_is),
    "description": ("description", _text_or_unset),
    "pattern": ("pattern", lambda value: PATTERN_TO_WIRE.get(value, value)),
    "status": ("status", _pipeline_status),
}


class _StoredGraph:
    """A pipeline's graph as this server holds it, with ids translated to manifest ids."""

    def __init__(self, pipeline_id: str, data: dict[str, Any], response: httpx.Response) -> None:
        method, path = response.request.method, response.request.url.path
        raw_nodes = [n for n in data.get("nodes") or [] if isinstance(n, dict)]
        raw_edges = [c for c in data.get("connections") or [] if isinstance(c, dict)]
        labels = [str(n.get("label") or "") for n in raw_nodes]
        # wire id -> the id shown to the reconciler: the label, when it can be a manifest id
        # and is unique in this graph; else the stored id itself.
        self.shown: dict[str, str] = {}
        for node, label in zip(raw_nodes, labels, strict=True):
            wire_id = str(node.get("id"))
            usable = _NODE_ID.fullmatch(label) is not None and labels.count(label) == 1
            self.shown[wire_id] = label if usable else wire_id
        self.wire_by_shown = {shown: wire for wire, shown in self.shown.items()}
        self.nodes = [
            PipelineNode(
                id=self.shown[str(n.get("id"))],
                pipeline_id=pipeline_id,
                node_type=str(n.get("node_type") or ""),
                agent_id=_text_or_none(n.get("agent_id")),
                config=_as_dict(json_text(n.get("config"), method=method, path=path)),
                x=float(n.get("position_x") or 0),
                y=float(n.get("position_y") or 0),
            )
            for n in raw_nodes
        ]
        self.connections = [
            PipelineConnection(
                id=str(c.get("id") or ""),
                pipeline_id=pipeline_id,
                source=self.shown.get(str(c.get("source_node_id")), str(c.get("source_node_id"))),
                target=self.shown.get(str(c.get("target_node_id")), str(c.get("target_node_id"))),
                source_handle=_handle(c.get("source_handle"), DEFAULT_SOURCE_HANDLE),
                target_handle=_handle(c.get("target_handle"), DEFAULT_TARGET_HANDLE),
            )
            for c in raw_edges
        ]
        self.conditions = [
            json_text(c.get("condition"), method=method, path=path) for c in raw_edges
        ]


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


def _handle(value: Any, default: str) -> str | None:
    return None if value in (None, "", default) else str(value)


class GraphNotStoredError(ApiError):
    """A graph write answered 200 but the server stored something else (it skips failures)."""


class StudioPipelines(_StudioResource[Pipeline]):
    kind = "Pipeline"
    path = "/pipelines"
    noun = "pipeline"
    a_noun = "a pipeline"
    envelope = "data"

    def __init__(self, session: ApiSession, scope: _Scope) -> None:
        super().__init__(session, scope)
        # One read serves both get_nodes and get_connections of a pipeline.
        self._graphs: dict[str, asyncio.Task[_StoredGraph]] = {}

    async def _records(self) -> list[dict[str, Any]]:
        workspace_id = await self.scope.workspace_id()
        if workspace_id is None:
            return []
        organization_id = await self.scope.organization_id()
        records = await _list_pages(
            self.session,
            self.path,
            "data",
            {"organization_id": organization_id, "workspace_id": workspace_id},
        )
        kept = []
        for record in records:
            if not await self.scope.is_ours(record, in_workspace=True):
                _log.warning(
                    "ignoring pipeline %s: it belongs to another organization or workspace",
                    record.get("id"),
                )
                continue
            if record.get("status") != ARCHIVED:
                kept.append(record)
        return kept

    async def list_all(self) -> list[Pipeline]:
        return [self._parse_listed(record) for record in await self._records()]

    def _parse(self, data: dict[str, Any], response: httpx.Response) -> Pipeline:
        return _pipeline(data, response)

    async def _graph(self, pipeline_id: str) -> _StoredGraph:
        task = self._graphs.get(pipeline_id)
        if task is None:

            async def read() -> _StoredGraph:
                data, response = await self._read(pipeline_id)
                return _StoredGraph(pipeline_id, data, response)

            task = asyncio.ensure_future(read())
            self._graphs[pipeline_id] = task
        try:
            return await task
        except BaseException:
            self._graphs.pop(pipeline_id, None)
            raise

    async def get_nodes(self, pipeline_id: str) -> list[PipelineNode]:
        return (await self._graph(pipeline_id)).nodes

    async def get_connections(self, pipeline_id: str) -> list[PipelineConnection]:
        return (await self._graph(pipeline_id)).connections

    async def create(self, fields: dict[str, Any]) -> Pipeline:
        workspace_id = await self.scope.ensure_workspace()
        shown = self.session.full_path(self.path)
        body = {
            **_to_wire(fields, _PIPELINE_WIRE, "POST", shown),
            "organization_id": await self.scope.organization_id(),
            "workspace_id": workspace_id,
        }
        return await self._create_once(fields.get("name"), body)

    async def update(self, pipeline_id: str, changes: dict[str, Any]) -> Pipeline:
        path = self._item_path(pipeline_id)
        body = _to_wire(changes, _PIPELINE_WIRE, "PUT", self.session.full_path(path))
        # Check ownership first: an id of another organization is never written.
        await self.get(pipeline_id)
        if body:
            await self.session.request("PUT", path, json=body)
        return await self.get(pipeline_id)

    async def delete(self, pipeline_id: str) -> None:
        await self.get(pipeline_id)
        await self.session.request("DELETE", self._item_path(pipeline_id), missing_ok_on_retry=True)

    async def put_graph(self, pipeline_id: str, graph: Graph) -> None:
        path = self._item_path(pipeline_id)
        self._graphs.pop(pipeline_id, None)
        before = await self._graph(pipeline_id)
        # Keep the stored id of a node that is already there (stable ids, and a manifest id
        # that reads back as itself stays itself); derive one for a new node.
        wire_ids = {
            node.id: before.wire_by_shown.get(node.id) or node_wire_id(pipeline_id, node.id)
            for node in graph.nodes
        }
        nodes = [
            {
                "id": wire_ids[node.id],
                "label": node.id,
                "node_type": node.node_type,
                **({"agent_id": node.agent_id} if node.agent_id else {}),
                "config": node.config,
                "position_x": node.x,
                "position_y": node.y,
            }
            for node in graph.nodes
        ]
        connections = [
            {
                "source_node_id": wire_ids.get(edge.source, edge.source),
                "target_node_id": wire_ids.get(edge.target, edge.target),
                "source_handle": edge.source_handle or DEFAULT_SOURCE_HANDLE,
                "target_handle": edge.target_handle or DEFAULT_TARGET_HANDLE,
            }
            for edge in graph.edges
        ]
        await self.session.request(
            "PUT", f"{path}/graph", json={"nodes": nodes, "connections": connections}
        )
        # The write is not atomic and answers 200 even when inserts failed: read it back.
        self._graphs.pop(pipeline_id, None)
        stored = await self._graph(pipeline_id)
        self._graphs.pop(pipeline_id, None)
        problems = _graph_differences(graph, stored)
        if problems:
            raise GraphNotStoredError(
                "PUT",
                self.session.full_path(f"{path}/graph"),
                200,
                "the server answered 200 but stored a different graph (it skips failed "
                f"inserts without saying so): {'; '.join(problems)}",
            )


def _graph_differences(sent: Graph, stored: _StoredGraph) -> list[str]:
    want_nodes = {
        n.id: (n.node_type, n.agent_id, n.config, float(n.x), float(n.y)) for n in sent.nodes
    }
    have_nodes = {n.id: (n.node_type, n.agent_id, n.config, n.x, n.y) for n in stored.nodes}
    problems = []
    for node_id, want in want_nodes.items():
        have = have_nodes.get(node_id)
        if have is None:
            problems.append(f"node {node_id} was not stored")
        elif have != want:
            problems.append(f"node {node_id} was stored differently")
    for node_id in sorted(set(have_nodes) - set(want_nodes)):
        problems.append(f"node {node_id} is there but was not sent")
    want_edges = {(e.source, e.target, e.source_handle, e.target_handle) for e in sent.edges}
    have_edges = {
        (c.source, c.target, c.source_handle, c.target_handle) for c in stored.connections
    }
    for edge in sorted(want_edges - have_edges, key=str):
        problems.append(f"edge {edge[0]} → {edge[1]} was not stored")
    for edge in sorted(have_edges - want_edges, key=str):
        problems.append(f"edge {edge[0]} → {edge[1]} is there but was not sent")
    return problems


def _stub_response(method: str, path: str) -> httpx.Response:
    """A stand-in answer for parse errors found in an already-decoded list."""
    return httpx.Response(200, request=httpx.Request(method, f"http://list{path}"))


# ---- policies -------------------------------------------------------------------------


def condition_field(attribute: str) -> str:
    """A manifest attribute as this server's dotted field: bare names are the resource's."""
    return attribute if attribute.startswith(CONDITION_ROOTS) else RESOURCE_ROOT + attribute


def condition_attribute(field: str) -> str:
    return field[len(RESOURCE_ROOT) :] if field.startswith(RESOURCE_ROOT) else field


def _conditions_from_wire(value: Any, method: str, path: str) -> list[PolicyCondition]:
    data = json_text(value, method=method, path=path)
    if not data:
        return []
    if isinstance(data, dict) and "all" in data and isinstance(data["all"], list):
        items = data["all"]
    elif isinstance(data, dict) and "field" in data:
        items = [data]
    else:
        # `any` groups and other shapes have no manifest form: shown as they are, so a plan
        # replaces them with the manifest's and an export leaves the policy out.
        return [PolicyCondition(attribute="<conditions>", operator="unsupported", value=data)]
    return [
        PolicyCondition(
            attribute=condition_attribute(str(item.get("field", ""))),
            operator=str(item.get("op", "")),
            value=item.get("value"),
        )
        for item in items
        if isinstance(item, dict)
    ]


def _conditions_to_wire(conditions: list[Any]) -> dict[str, Any]:
    if not conditions:
        return {}
    items = []
    for condition in conditions:
        item = condition if isinstance(condition, dict) else condition.model_dump()
        items.append(
            {
                "field": condition_field(str(item["attribute"])),
                "op": item["operator"],
                "value": item.get("value"),
            }
        )
    return {"all": items}


def _policy(data: dict[str, Any], response: httpx.Response) -> Policy:
    method, path = response.request.method, response.request.url.path
    action = data.get("action")
    return Policy(
        id=str(_field(data, "id", response)),
        name=str(_field(data, "name", response)),
        description=_text_or_none(data.get("description")),
        effect=str(_field(data, "effect", response)),
        resource_type=str(_field(data, "resource_type", response)),
        actions=[str(action)] if action else [],
        conditions=_conditions_from_wire(data.get("conditions"), method, path),
        organization_id=str(data.get("organization_id") or ""),
    )


def _one_action(actions: Any) -> Any:
    if len(actions) != 1:
        raise _NotHeld("this server holds exactly one action per policy")
    return actions[0]


_POLICY_WIRE: _WireFields = {
    "name": ("name", _as_is),
    "effect": ("effect", _as_is),
    "resource_type": ("resource_type", _as_is),
    "description": ("description", _text_or_unset),
    "actions": ("action", _one_action),
    "conditions": ("conditions", _conditions_to_wire),
}


class StudioPolicies(_StudioResource[Policy]):
    kind = "Policy"
    path = "/policies"
    noun = "policy"
    a_noun = "a policy"
    listed_whole = True

    async def _records(self) -> list[dict[str, Any]]:
        records = await _list_pages(self.session, self.path, "records")
        return [r for r in records if await self.scope.is_ours(r, in_workspace=False)]

    async def list_all(self) -> list[Policy]:
        return [self._parse_listed(record) for record in await self._records()]

    def _parse(self, data: dict[str, Any], response: httpx.Response) -> Policy:
        return _policy(data, response)

    async def create(self, fields: dict[str, Any]) -> Policy:
        body = _to_wire(fields, _POLICY_WIRE, "POST", self.session.full_path(self.path))
        body.setdefault("conditions", {})
        return await self._create_once(fields.get("name"), body)

    async def update(self, policy_id: str, changes: dict[str, Any]) -> Policy:
        path = self._item_path(policy_id)
        body = _to_wire(changes, _POLICY_WIRE, "PUT", self.session.full_path(path))
        if not body:
            return await self.get(policy_id)
        response = await _request_by_id(self.session, "PUT", path, json=body)
        return self._parse(self._record_of(response), response)

    async def delete(self, policy_id: str) -> None:
        await _request_by_id(
            self.session, "DELETE", self._item_path(policy_id), missing_ok_on_retry=True
        )


# ---- deployments: not this dialect's (the server deploys agents, not pipelines) -------


# ---- kaizenctl's own records: inactive policies (docs/ownership.md) ------------------

RECORD_RESOURCE_TYPE = "kaizenctl_record"
LOCK_RECORD_PREFIX = f"{RECORD_PREFIX}lock."


class StudioRecords:
    """Set inventories and locks as policies: ``status: inactive`` and assigned to nobody
    (so they never take effect), the content in ``conditions``, which this server stores
    without checking. Names are not unique here, so ``unique_names`` is False: the lock
    creates, then lists, and the oldest claim wins. A record belongs to the workspace: an
    inventory's stored name ends in ``@<workspace id>``; a lock's in ``@name:<workspace name>``,
    because the lock is taken before the workspace may exist: two first applies must not each
    create the workspace (names are not unique there either) and then each hold a lock of
    their own. A lock named by workspace id (an older kaizenctl's) is still read as a claim.
    """

    unique_names = False
    path = "/policies"

    def __init__(self, session: ApiSession, scope: _Scope) -> None:
        self.session = session
        self.scope = scope

    @property
    def _lock_suffix(self) -> str:
        return f"@name:{self.scope.workspace_name}"

    def _record(self, data: dict[str, Any], suffixes: tuple[str, ...]) -> ServerRecord | None:
        name = str(data.get("name", ""))
        content = data.get("conditions")
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError:
                return None
        suffix = next((s for s in suffixes if name.endswith(s)), None)
        if not (is_record_name(name) and suffix is not None and isinstance(content, dict)):
            return None
        bare = name.removesuffix(suffix)
        if suffix == self._lock_suffix and not bare.startswith(LOCK_RECORD_PREFIX):
            return None  # only locks are named by the workspace's name
        inner = content.get("kaizenctl")
        if not isinstance(inner, dict):
            return None
        return ServerRecord(
            id=str(data.get("id")),
            name=bare,
            data=inner,
            created_at=str(data.get("created_at", "")),
        )

    def _checked(
        self, data: dict[str, Any], suffixes: tuple[str, ...], response: httpx.Response
    ) -> ServerRecord:
        record = self._record(data, suffixes)
        if record is None:
            raise ResponseFormatError.of(
                response, "the server changed a kaizenctl record's name or content"
            )
        return record

    async def _suffixes(self) -> tuple[str, ...]:
        workspace = await self.scope.workspace_id()
        if workspace is None:
            return (self._lock_suffix,)
        return (self._lock_suffix, f"@{workspace}")

    async def list_all(self) -> list[ServerRecord]:
        suffixes = await self._suffixes()
        found = await _list_pages(
            self.session, self.path, "records", {"resource_type": RECORD_RESOURCE_TYPE}
        )
        records: list[ServerRecord] = []
        for item in found:
            if not await self.scope.is_ours(item, in_workspace=False):
                continue
            record = self._record(item, suffixes)
            if record is not None:
                records.append(record)
        # Oldest first, so a lock's claims are in the order they were made.
        return sorted(records, key=lambda r: (r.name, r.created_at, r.id))

    async def find(self, name: str) -> list[ServerRecord]:
        return [r for r in await self.list_all() if r.name == name]

    async def _suffix_for(self, name: str) -> str:
        if name.startswith(LOCK_RECORD_PREFIX):
            return self._lock_suffix
        return f"@{await self.scope.ensure_workspace()}"

    async def create(self, name: str, data: dict[str, Any]) -> ServerRecord:
        suffix = await self._suffix_for(name)
        body = {
            "name": f"{name}{suffix}",
            "description": RECORD_DESCRIPTION,
            "resource_type": RECORD_RESOURCE_TYPE,
            "action": "none",
            "effect": "allow",
            "status": "inactive",
            "conditions": {"kaizenctl": data},
        }

        async def send() -> ServerRecord:
            response = await self.session.request("POST", self.path, json=body)
            return self._checked(
                _object(self.session.decode(response), response, "a policy"), (suffix,), response
            )

        async def find() -> ServerRecord | None:
            # Names are not unique: ours is the one with exactly this content.
            return next((r for r in await self.find(name) if r.data == data), None)

        return await create_at_most_once(self.session.policy, send, find)

    async def replace(self, record_id: str, data: dict[str, Any]) -> ServerRecord:
        path = f"{self.path}/{path_segment(record_id)}"
        response = await _request_by_id(
            self.session, "PUT", path, json={"conditions": {"kaizenctl": data}}
        )
        return self._checked(
            _object(self.session.decode(response), response, "a policy"),
            await self._suffixes(),
            response,
        )

    async def delete(self, record_id: str) -> None:
        try:
            await self.session.request(
                "DELETE", f"{self.path}/{path_segment(record_id)}", missing_ok_on_retry=True
            )
        except ApiError as error:
            error = _not_ours_on_403(error)
            if isinstance(error, NotFoundError):
                return  # already gone counts as deleted
            raise error from None


class StudioDeployments:
    """No pipeline deployments exist on this server (a pipeline Deployment is refused at plan);
    agents on gateways are ``StudioApi.rollout``'s."""

    def __init__(self, session: ApiSession) -> None:
        self.session = session

    def _unsupported(self) -> ApiError:
        return ApiError(
            "POST",
            self.session.full_path("/deployments"),
            None,
            "this server deploys agents onto gateways, not pipelines",
        )

    async def list_all(
        self,
        *,
        pipeline_id: str | None = None,
        environment: str | None = None,
        status: str | None = None,
    ) -> list[Deployment]:
        return []

    async def get(self, deployment_id: str) -> Deployment:
        raise self._unsupported()

    async def deploy(self, pipeline_id: str, environment: str) -> Deployment:
        raise self._unsupported()

    async def promote(self, deployment_id: str, target_environment: str) -> Deployment:
        raise self._unsupported()

    async def rollback(self, deployment_id: str) -> Deployment:
        raise self._unsupported()

    async def delete(self, deployment_id: str) -> None:
        raise self._unsupported()

    async def logs(self, deployment_id: str) -> list[DeploymentLog]:
        raise self._unsupported()

    async def wait_settled(self, deployment_id: str, *, timeout: float) -> Deployment:
        raise self._unsupported()


# ---- auth -----------------------------------------------------------------------------


def _user(data: Any, response: httpx.Response) -> User:
    record = _object(data, response, "a user")
    return User(
        id=str(_field(record, "id", response)),
        email=str(record.get("email") or ""),
        full_name=str(record.get("name") or ""),
        organization_id=str(_field(record, "organization_id", response)),
        role=str(record.get("role") or ""),
        created_at=str(record.get("created_at") or ""),
    )


class StudioAuth(AuthV1):
    """JSON login, tokens at the top level of its answer; refresh rotates as on the contract."""

    def __init__(
        self,
        session: ApiSession,
        scope: _Scope,
        email: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(session, email, password)
        self.scope = scope

    async def login(self, email: str, password: str) -> AuthTokens:
        # Rate-limited to 10 a minute per IP: a run logs in once; a 429 is retried after its
        # Retry-After by the session.
        response = await self._send_login(password, json={"email": email, "password": password})
        data = _object(self.session.decode(response), response, "a login answer")
        if isinstance(data.get("user"), dict):
            self.scope.know_organization(_user(data["user"], response).organization_id)
        return self._tokens(response, data)

    async def register(
        self,
        email: str,
        password: str,
        full_name: str,
        organization_name: str | None = None,
    ) -> tuple[User, AuthTokens]:
        raise UsageError("registering is not something kaizenctl does on this server")

    async def me(self) -> User:
        response = await self.session.request("GET", "/users/me")
        return _user(self.session.decode(response), response)


# ---- the API --------------------------------------------------------------------------


class StudioApi(DialectApi):
    """``KaizenApi`` for a shipped Kaizen Studio server."""

    capabilities: Capabilities = STUDIO_CAPABILITIES

    def __init__(
        self,
        session: ApiSession,
        *,
        api_url: str,
        workspace: str | None,
        email: str | None = None,
        password: str | None = None,
    ) -> None:
        if not workspace:
            raise UsageError(
                "the studio dialect needs a workspace: pass --workspace NAME or set "
                "KAIZEN_WORKSPACE (apply creates it when it is missing)"
            )
        super().__init__(session, api_url)
        session.error_detail = error_detail
        self.scope = _Scope(session, workspace)
        self.auth = StudioAuth(session, self.scope, email, password)
        self.scope.me = self.auth.me
        self.agents = StudioAgents(session, self.scope)
        self.pipelines = StudioPipelines(session, self.scope)
        self.policies = StudioPolicies(session, self.scope)
        self.deployments = StudioDeployments(session)
        # Agents on gateways: what this server deploys (kaizenctl.reconcile.rollout).
        self.rollout = StudioRollout(session)
        self.records = StudioRecords(session, self.scope)
        session.renewer = self.auth.renew

    async def current_user(self) -> User:
        return await self.auth.me()


def base_url(api_url: str) -> str:
    return f"{api_url.rstrip('/')}{API_PREFIX}"


async def looks_like_studio(session: ApiSession) -> bool:
    """One unauthenticated GET that only this server answers with its list of patterns."""
    try:
        response = await session.request("GET", PROBE_PATH, authenticated=False, idempotent=True)
    except ApiError as error:
        if error.status is not None and 400 <= error.status < 500:
            return False
        raise
    try:
        data = response.json()
    except ValueError:
        return False
    patterns = data.get("data") if isinstance(data, dict) else None
    return isinstance(patterns, dict) and "sequential" in patterns
