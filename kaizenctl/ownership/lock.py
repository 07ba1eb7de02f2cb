"""The set lock: one apply at a time per manifest set, as a lease on the server.

The lock is a record ``kaizenctl.lock.<set>`` (``kaizenctl.api.records``) naming its
holder, since when, and until when the lease runs. Taking it:

1. create my lock record (a fresh ``lock_id``);
2. list the lock records of this set; an expired one is deleted (its holder was
   killed, or lost the network for longer than a lease);
3. the oldest live record wins (by the server's creation time, then id). If it
   is not mine, I withdraw my record and wait (``timeout``) or refuse at once,
   naming the holder and since when.

Where names are unique (contract) step 1 is the mutual exclusion: a second create
answers 409. Where they are not, step 3 is, and the winner looks again after a
short settle time, so that a create committed late still loses. While held, the
lease is renewed every third of its length; a renewal that finds the record gone
(someone broke the lock) stops the apply. ``plan`` never takes the lock.

Clocks and sleeps are injected (``LockOptions``) so tests never wait on a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from kaizenctl.api.errors import ConflictError, NotFoundError
from kaizenctl.api.records import RECORD_PREFIX, RecordService, ServerRecord
from kaizenctl.errors import KaizenctlError

LOCK_PREFIX = f"{RECORD_PREFIX}lock."
LOCK_TYPE = "kaizenctl-lock"
DEFAULT_LEASE_S = 120.0
DEFAULT_POLL_S = 2.0
DEFAULT_SETTLE_S = 1.0
# A create answered by a record that vanished before the list: try again at once, a few times.
IMMEDIATE_RETRIES = 5


def lock_name(set_name: str) -> str:
    return f"{LOCK_PREFIX}{set_name}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_holder() -> str:
    """Who holds the lock, as people read it: user@host, pid, and the CI run if any."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    holder = f"{user}@{socket.gethostname()} (pid {os.getpid()})"
    run = os.environ.get("GITHUB_RUN_ID")
    if run and os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        holder += f", {server}/{os.environ['GITHUB_REPOSITORY']}/actions/runs/{run}"
    return holder


@dataclass(frozen=True)
class LockOptions:
    # Seconds to wait for a held lock; 0 refuses at once (Terraform's -lock-timeout).
    timeout: float = 0.0
    lease: float = DEFAULT_LEASE_S
    poll_interval: float = DEFAULT_POLL_S
    settle: float = DEFAULT_SETTLE_S
    holder: str = field(default_factory=default_holder)
    clock: Callable[[], datetime] = utc_now
    # Waiting for a held lock and the settle time.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Between lease renewals (a separate knob so a test can drive renewals alone).
    heartbeat_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class LockData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["kaizenctl-lock"] = "kaizenctl-lock"
    format_version: int = 1
    set: str
    lock_id: str
    holder: str
    since: datetime
    expires_at: datetime


@dataclass(frozen=True)
class LockClaim:
    """One lock record as read: parsed, or ``data`` None when it cannot be read."""

    record: ServerRecord
    data: LockData | None

    def expired(self, now: datetime) -> bool:
        # An unreadable record never expires on its own: force-unlock removes it.
        return self.data is not None and self.data.expires_at <= now

    @property
    def lock_id(self) -> str:
        return self.data.lock_id if self.data else self.record.id

    def describe(self) -> str:
        if self.data is None:
            return f"an unreadable lock record (id {self.record.id})"
        return (
            f"{self.data.holder} since {self.data.since.isoformat(timespec='seconds')} "
            f"(lock id {self.data.lock_id}, lease until "
            f"{self.data.expires_at.isoformat(timespec='seconds')})"
        )


def _claim(record: ServerRecord) -> LockClaim:
    try:
        return LockClaim(record, LockData.model_validate(record.data))
    except ValidationError:
        return LockClaim(record, None)


def read_claims(records: list[ServerRecord], set_name: str) -> list[LockClaim]:
    """The lock records of ``set_name``, oldest first (the order that decides who holds it)."""
    name = lock_name(set_name)
    claims = [_claim(r) for r in records if r.name == name]
    return sorted(claims, key=lambda c: (c.record.created_at, c.record.id))


class LockHeldError(KaizenctlError):
    """Another apply holds the set's lock."""

    def __init__(self, set_name: str, holder: LockClaim, waited: float) -> None:
        self.set_name = set_name
        self.holder = holder
        waited_text = f" after waiting {waited:g} s" if waited > 0 else ""
        super().__init__(
            f"set {set_name!r} is locked by {holder.describe()}; nothing was changed"
            f"{waited_text}. Wait for it (--lock-timeout SECONDS), or if that apply is dead, "
            f"let the lease run out or run `kaizenctl force-unlock --set {set_name} "
            f"{holder.lock_id}`"
        )


class LockLostError(KaizenctlError):
    """The lock was broken while this apply held it."""


async def _delete_quietly(records: RecordService, record_id: str) -> None:
    with contextlib.suppress(NotFoundError):
        await records.delete(record_id)


@dataclass
class HeldLock:
    """A lock this process holds; ``lost`` turns True if it was broken meanwhile."""

    records: RecordService
    set_name: str
    record: ServerRecord
    data: LockData
    options: LockOptions
    lost: bool = False
    broke: list[str] = field(default_factory=list)

    @property
    def lock_id(self) -> str:
        return self.data.lock_id

    def _renewed(self) -> LockData:
        now = self.options.clock()
        return self.data.model_copy(
            update={"expires_at": now + timedelta(seconds=self.options.lease)}
        )

    async def renew(self) -> bool:
        """Extend the lease; False (and ``lost``) when the lock is no longer ours."""
        renewed = self._renewed()
        try:
            await self.records.replace(self.record.id, renewed.model_dump(mode="json"))
        except NotFoundError:
            self.lost = True
            return False
        self.data = renewed
        if not self.records.unique_names:
            claims = read_claims(await self.records.find(lock_name(self.set_name)), self.set_name)
            live = [c for c in claims if not c.expired(self.options.clock())]
            if live and live[0].record.id != self.record.id:
                self.lost = True
                return False
        return True

    async def keep_alive(self, owner: asyncio.Task[Any] | None) -> None:
        """Renew every third of the lease until cancelled; stop ``owner`` if the lock is lost."""
        while True:
            await self.options.heartbeat_sleep(self.options.lease / 3)
            try:
                still_ours = await self.renew()
            except KaizenctlError:
                continue  # the server is unreachable for now: try at the next beat
            if not still_ours:
                if owner is not None:
                    owner.cancel()
                return

    async def release(self) -> None:
        await _delete_quietly(self.records, self.record.id)


async def acquire(records: RecordService, set_name: str, options: LockOptions) -> HeldLock:
    """Take the set's lock, waiting up to ``options.timeout``; ``LockHeldError`` otherwise."""
    name = lock_name(set_name)
    started = options.clock()
    deadline = started + timedelta(seconds=options.timeout)
    immediate = 0
    broke: list[str] = []
    while True:
        now = options.clock()
        data = LockData(
            set=set_name,
            lock_id=str(uuid.uuid4()),
            holder=options.holder,
            since=now,
            expires_at=now + timedelta(seconds=options.lease),
        )
        mine: ServerRecord | None = None
        try:
            mine = await records.create(name, data.model_dump(mode="json"))
        except ConflictError:
            mine = None
        if mine is not None and mine.data.get("lock_id") != data.lock_id:
            mine = None  # a lost answer was resolved to somebody else's record
        if mine is not None and not records.unique_names:
            # Let a create that raced ours commit, so the list below sees it.
            await options.sleep(options.settle)
        claims = read_claims(await records.find(name), set_name)
        if mine is None:
            # A create that committed, lost its answer and was sent again meets its own
            # record (409 where names are unique): that record is ours.
            mine = next(
                (c.record for c in claims if c.data and c.data.lock_id == data.lock_id), None
            )
        now = options.clock()
        live: list[LockClaim] = []
        for claim in claims:
            if claim.expired(now) and (mine is None or claim.record.id != mine.id):
                await _delete_quietly(records, claim.record.id)
                broke.append(claim.describe())
            else:
                live.append(claim)
        winner = live[0] if live else None
        if mine is not None and winner is not None and winner.record.id == mine.id:
            return HeldLock(records, set_name, mine, data, options, broke=broke)
        if mine is not None:
            await _delete_quietly(records, mine.id)
        if winner is None and immediate < IMMEDIATE_RETRIES:
            immediate += 1
            continue  # the holder let go (or its lease ran out) between our create and list
        if winner is None:
            raise KaizenctlError(
                f"could not take the lock of set {set_name!r}: the server keeps refusing the "
                "lock record but lists none; nothing was changed"
            )
        now = options.clock()
        if now >= deadline:
            # With no timeout nothing was waited for (the settle time is not waiting).
            waited = (now - started).total_seconds() if options.timeout > 0 else 0.0
            raise LockHeldError(set_name, winner, waited)
        remaining = (deadline - now).total_seconds()
        await options.sleep(min(options.poll_interval, remaining))


@asynccontextmanager
async def set_lock(
    records: RecordService, set_name: str, options: LockOptions | None = None
) -> AsyncIterator[HeldLock]:
    """Hold the set's lock for the body; renew the lease meanwhile; release it at the end."""
    options = options or LockOptions()
    held = await acquire(records, set_name, options)
    heartbeat = asyncio.ensure_future(held.keep_alive(asyncio.current_task()))
    try:
        yield held
    except asyncio.CancelledError:
        if held.lost:
            raise LockLostError(
                f"the lock of set {set_name!r} was broken while this apply held it "
                "(force-unlock, or its lease ran out); stopped"
            ) from None
        raise
    finally:
        heartbeat.cancel()
        with contextlib.suppress(KaizenctlError):  # if not, the lease runs out by itself
            await held.release()


async def force_unlock(records: RecordService, set_name: str, lock_id: str) -> LockClaim:
    """Break the set's lock with this id (Terraform's force-unlock); the claim removed."""
    claims = read_claims(await records.find(lock_name(set_name)), set_name)
    for claim in claims:
        if claim.lock_id == lock_id:
            await _delete_quietly(records, claim.record.id)
            return claim
    if not claims:
        raise KaizenctlError(f"set {set_name!r} is not locked; nothing was changed")
    held = "; ".join(c.describe() for c in claims)
    raise KaizenctlError(
        f"set {set_name!r} has no lock with id {lock_id}: it is held by {held}; "
        "nothing was changed (the lock changed hands? check before breaking it)"
    )
