"""The inventory of a manifest set: which live resources the set owns.

One record per set, ``kaizenctl.set.<set>``, kept on the server (see
``kaizenctl.api.records``), lists the set's members as ``{kind, name, id}``. A
member without an id is an *intent*: apply writes it before the create it
announces, so an answer lost or a process killed between the create and the
record's confirmation never leaves an orphan. The next plan resolves an intent by
name against live state (it is ours: we announced it), and drops members whose
resource is gone. Deployments are not listed: a deployment slot belongs to the
set that owns its pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from kaizenctl.api.records import RECORD_PREFIX, RecordService, ServerRecord
from kaizenctl.errors import PlanError, UsageError

DEFAULT_SET = "default"
INVENTORY_PREFIX = f"{RECORD_PREFIX}set."
INVENTORY_TYPE = "kaizenctl-inventory"
INVENTORY_FORMAT_VERSION = 1
# The same rule as a manifest name, so that a set name fits a record name on any server.
SET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SET_NAME_MAX = 63


def check_set_name(name: str) -> str:
    if not SET_NAME.match(name) or len(name) > SET_NAME_MAX:
        raise UsageError(
            f"--set {name!r}: a set name is 1-{SET_NAME_MAX} lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit (like a manifest name)"
        )
    return name


def inventory_name(set_name: str) -> str:
    return f"{INVENTORY_PREFIX}{set_name}"


class Member(BaseModel):
    """One resource a set owns; ``id`` None: announced, its create may not have happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    name: str
    id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


class InventoryData(BaseModel):
    """The content of an inventory record, as stored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["kaizenctl-inventory"] = "kaizenctl-inventory"
    format_version: int = INVENTORY_FORMAT_VERSION
    set: str
    members: tuple[Member, ...] = ()
    updated_at: str = ""
    updated_by: str = ""


@dataclass(frozen=True)
class Inventory:
    set_name: str
    record_id: str
    members: tuple[Member, ...]


def read_inventories(records: Iterable[ServerRecord]) -> dict[str, Inventory]:
    """Each set's inventory, by set name; a damaged or doubled record is a plan error."""
    found: dict[str, list[Inventory]] = {}
    for record in records:
        if not record.name.startswith(INVENTORY_PREFIX):
            continue
        set_name = record.name.removeprefix(INVENTORY_PREFIX)
        try:
            data = InventoryData.model_validate(record.data)
        except ValidationError as error:
            raise PlanError(
                f"the ownership record of set {set_name!r} (id {record.id}) is damaged: "
                f"{error.errors()[0]['msg']}; see docs/ownership.md to repair it"
            ) from None
        if data.format_version != INVENTORY_FORMAT_VERSION:
            raise PlanError(
                f"the ownership record of set {set_name!r} (id {record.id}) has format "
                f"{data.format_version}; this kaizenctl reads {INVENTORY_FORMAT_VERSION} "
                "(upgrade kaizenctl)"
            )
        found.setdefault(set_name, []).append(Inventory(set_name, record.id, data.members))
    doubled = {name: items for name, items in found.items() if len(items) > 1}
    if doubled:
        details = "; ".join(
            f"set {name!r} has ids {', '.join(i.record_id for i in items)}"
            for name, items in sorted(doubled.items())
        )
        raise PlanError(
            f"the server holds more than one ownership record for a set ({details}); "
            "kaizenctl will not guess which is right: see docs/ownership.md to merge them"
        )
    return {name: items[0] for name, items in found.items()}


# kind -> name -> live id, of the live resources a plan read.
LiveIds = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class OwnershipView:
    """Who owns what, as a plan of ``set_name`` sees it."""

    set_name: str
    # This set's record id; None when the set has none yet (first apply, or a set
    # applied by a kaizenctl without ownership records: the migration case).
    record_id: str | None
    # (kind, live id) -> the sets whose inventory lists it (more than one: contested).
    owners: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # This set's members as they stand: intents resolved, members that are gone dropped.
    members: tuple[Member, ...] = ()
    # This set's members exactly as stored (to tell whether a write is needed).
    stored: tuple[Member, ...] = ()

    def owners_of(self, kind: str, live_id: str) -> frozenset[str]:
        return self.owners.get((kind, live_id), frozenset())

    def owner_labels(self) -> dict[str, list[str]]:
        """``Kind/id`` -> owning sets, for fingerprints of saved plans."""
        return {f"{kind}/{live_id}": sorted(sets) for (kind, live_id), sets in self.owners.items()}


def ownership_view(set_name: str, records: Iterable[ServerRecord], live: LiveIds) -> OwnershipView:
    inventories = read_inventories(records)
    ids_live = {kind: set(by_name.values()) for kind, by_name in live.items()}
    names_by_id = {
        (kind, live_id): name for kind, by_name in live.items() for name, live_id in by_name.items()
    }
    owners: dict[tuple[str, str], set[str]] = {}
    resolved: dict[str, list[Member]] = {}
    for inventory in inventories.values():
        kept: list[Member] = []
        for member in inventory.members:
            live_id = member.id
            if live_id is None:
                # An intent: the create it announced happened if the name is live now.
                live_id = live.get(member.kind, {}).get(member.name)
            if live_id is None or live_id not in ids_live.get(member.kind, set()):
                continue  # gone (deleted, or the announced create never happened)
            owners.setdefault((member.kind, live_id), set()).add(inventory.set_name)
            name = names_by_id[(member.kind, live_id)]
            kept.append(Member(kind=member.kind, name=name, id=live_id))
        resolved[inventory.set_name] = kept
    mine = inventories.get(set_name)
    return OwnershipView(
        set_name=set_name,
        record_id=mine.record_id if mine else None,
        owners={key: frozenset(sets) for key, sets in owners.items()},
        members=tuple(_sorted(resolved.get(set_name, []))),
        stored=mine.members if mine else (),
    )


def _sorted(members: Iterable[Member]) -> list[Member]:
    unique = {(m.kind, m.id or "", m.name): m for m in members}
    return [unique[key] for key in sorted(unique)]


def normalized(members: Iterable[Member]) -> tuple[Member, ...]:
    return tuple(_sorted(members))


def inventory_document(
    set_name: str, members: Iterable[Member], *, now: datetime, by: str
) -> dict[str, Any]:
    data = InventoryData(
        set=set_name,
        members=normalized(members),
        updated_at=now.isoformat(timespec="seconds"),
        updated_by=by,
    )
    return data.model_dump(mode="json")


async def write_inventory(
    records: RecordService,
    view: OwnershipView,
    record_id: str | None,
    members: Iterable[Member],
    *,
    now: datetime,
    by: str,
) -> str:
    """Create or replace this set's record; its id. Called only under the set's lock."""
    document = inventory_document(view.set_name, members, now=now, by=by)
    if record_id is None:
        created = await records.create(inventory_name(view.set_name), document)
        return created.id
    await records.replace(record_id, document)
    return record_id
