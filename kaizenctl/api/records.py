"""kaizenctl's own records on a server: set inventories and set locks.

Neither API has labels or tags, so kaizenctl keeps what it must remember on the
server itself, as ordinary resources with reserved names (``kaizenctl.<what>.<set>``;
a manifest name can never contain a dot, so none can collide). Each dialect
chooses the kind that can carry a free JSON object and does nothing by itself:

- contract: an ``archived`` pipeline with pattern ``kaizenctl-record`` whose
  ``config`` holds the record. Names are unique, so a create is atomic (409 for
  the loser).

docs/ownership.md describes the records and why they are safe. Everything else
in kaizenctl reaches them through ``RecordService``; the resource services and
live state never show them (``is_record_name``).
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from kaizenctl.api.models import Pipeline

RECORD_PREFIX = "kaizenctl."
RECORD_PATTERN = "kaizenctl-record"
RECORD_DESCRIPTION = (
    "kaizenctl's own record (set inventory or set lock): do not edit, deploy or delete it "
    "by hand; see docs/ownership.md"
)


def is_record_name(name: str) -> bool:
    """True for the reserved names of kaizenctl's records (never a manifest name)."""
    return name.startswith(RECORD_PREFIX)


class ServerRecord(BaseModel):
    """One record as stored: its server id, reserved name, JSON content and creation time."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    data: dict[str, Any]
    # The server's creation timestamp, as a string (ordering of lock claims on servers
    # whose names are not unique).
    created_at: str = ""


class RecordService(Protocol):
    """Create, read, replace and delete kaizenctl's records on one server."""

    @property
    def unique_names(self) -> bool:
        """True when the server refuses a second record of one name (409): create is atomic."""
        ...

    async def list_all(self) -> list[ServerRecord]:
        """Every record of kaizenctl on the server (inventories and locks of every set)."""
        ...

    async def find(self, name: str) -> list[ServerRecord]:
        """The records with exactly this name (at most one where names are unique)."""
        ...

    async def create(self, name: str, data: dict[str, Any]) -> ServerRecord:
        """Create; a lost answer is resolved by looking the name up. 409 raises ConflictError."""
        ...

    async def replace(self, record_id: str, data: dict[str, Any]) -> ServerRecord:
        """Replace the content; a record that is gone raises NotFoundError."""
        ...

    async def delete(self, record_id: str) -> None:
        """Delete; a record already gone counts as deleted."""
        ...


class PipelineStore(Protocol):
    """What ``PipelineRecords`` needs of a dialect's pipeline service."""

    async def list_matching(self, search: str) -> list[Pipeline]: ...
    async def create(self, fields: dict[str, Any]) -> Pipeline: ...
    async def update(self, pipeline_id: str, changes: dict[str, Any]) -> Pipeline: ...
    async def delete(self, pipeline_id: str) -> None: ...


def _record(pipeline: Pipeline) -> ServerRecord | None:
    data = pipeline.config.get("kaizenctl")
    if not is_record_name(pipeline.name) or not isinstance(data, dict):
        return None
    return ServerRecord(
        id=pipeline.id, name=pipeline.name, data=data, created_at=pipeline.created_at
    )


class PipelineRecords:
    """Records as archived pipelines whose ``config`` holds them (CONTRACT.md servers)."""

    unique_names = True

    def __init__(self, pipelines: PipelineStore) -> None:
        self._pipelines = pipelines

    async def list_all(self) -> list[ServerRecord]:
        found = await self._pipelines.list_matching(RECORD_PREFIX)
        return sorted(
            (r for r in map(_record, found) if r is not None), key=lambda r: (r.name, r.id)
        )

    async def find(self, name: str) -> list[ServerRecord]:
        return [r for r in await self.list_all() if r.name == name]

    async def create(self, name: str, data: dict[str, Any]) -> ServerRecord:
        created = await self._pipelines.create(
            {
                "name": name,
                "pattern": RECORD_PATTERN,
                "status": "archived",
                "description": RECORD_DESCRIPTION,
                "config": {"kaizenctl": data},
            }
        )
        record = _record(created)
        assert record is not None, "the server changed a record's name or config on create"
        return record

    async def replace(self, record_id: str, data: dict[str, Any]) -> ServerRecord:
        updated = await self._pipelines.update(record_id, {"config": {"kaizenctl": data}})
        record = _record(updated)
        assert record is not None, "the server changed a record's name or config on update"
        return record

    async def delete(self, record_id: str) -> None:
        await self._pipelines.delete(record_id)
