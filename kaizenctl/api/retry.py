"""The one retry policy of kaizenctl's HTTP edge.

What happens to a request depends on what the server could have done with it:

* **Not processed** — a 429 answer, or a connection that never opened. Any
  request, a POST included, may simply be sent again after waiting. A 429 is
  waited out for ``Retry-After`` seconds, capped at ``retry_after_cap``;
  otherwise the wait is exponential backoff with full jitter.
* **Maybe processed** — the answer was lost (reset connection, read timeout),
  or the server answered 503 (CONTRACT.md: it may have taken effect) or a proxy
  502 or 504. GET, PUT, PATCH and DELETE are idempotent and are sent again (a
  DELETE answering 404 on such a retry counts as done). A POST is never sent
  again blindly: the session raises ``OutcomeUnknownError`` and
  ``create_at_most_once`` looks the result up first, posting again only when it
  is not there (after the 503's ``Retry-After``, if it gave one).
* **Processed** — any other answer (2xx, 4xx, 500): never retried here.

Retries count against ``max_attempts``, except a 429's ``Retry-After`` wait: that
is the server pacing us, not a failure, so six 429s in a row must not use up the
attempts a flaky connection needs. Every wait, counted or not, comes out of one
time budget per request (``total_budget``), so a server that keeps answering
429 turns into an error rather than a hung CI job.
``sleep``, ``clock`` and ``random`` are injectable so tests run in no time.
"""

from __future__ import annotations

import asyncio
import enum
import random as _random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

from kaizenctl.api.errors import ConflictError, OutcomeUnknownError

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


class Disposition(enum.Enum):
    """What an outcome allows."""

    DONE = "done"  # processed: return or raise, never retry
    RESEND = "resend"  # not processed: safe to send again, whatever the method
    MAYBE_DONE = "maybe_done"  # may have been processed: only idempotent requests are re-sent


# 429 is a refusal before any work. A 503 may come from a server that committed and then
# failed to answer (CONTRACT.md), and 502/504 from a proxy that lost its way to a server
# which may have acted already.
_NOT_PROCESSED_STATUSES = frozenset({429})
_MAYBE_PROCESSED_STATUSES = frozenset({502, 503, 504})


def classify_status(status: int) -> Disposition:
    if status in _NOT_PROCESSED_STATUSES:
        return Disposition.RESEND
    if status in _MAYBE_PROCESSED_STATUSES:
        return Disposition.MAYBE_DONE
    return Disposition.DONE


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Limits and timing of retries; one instance is shared by a whole session."""

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 5.0
    retry_after_cap: float = 30.0
    total_budget: float = 120.0
    # Refused connections are retried for this long only: a restarting server is back
    # within a second or two, and a wrong port should fail fast, not after total_budget.
    refused_budget: float = 2.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    random: Callable[[], float] = field(default=_random.random, repr=False)

    def begin(self) -> RetryBudget:
        """Start counting attempts and time for one logical request."""
        return RetryBudget(self, self.clock())

    def backoff(self, retry_number: int) -> float:
        """Full-jitter exponential backoff for the n-th retry (1-based)."""
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        # Full jitter spreads a crowd of clients hit by the same outage apart.
        return ceiling * (0.5 + 0.5 * self.random())


class RetryBudget:
    """The attempts and time left for one logical request."""

    def __init__(self, policy: RetryPolicy, started: float) -> None:
        self.policy = policy
        self.started = started
        self.retries = 0

    def next_delay(
        self, retry_after: float | None = None, *, server_paced: bool = False
    ) -> float | None:
        """How long to wait before the next attempt, or None when the budget is spent.

        ``server_paced``: the wait is a 429's ``Retry-After``; it does not count as an
        attempt, only against the time budget. A ``Retry-After`` below ``base_delay``
        ("now") is counted anyway, so a server saying "retry now" forever cannot spin us.
        """
        policy = self.policy
        uncounted = server_paced and retry_after is not None and retry_after >= policy.base_delay
        if not uncounted:
            if self.retries + 1 >= policy.max_attempts:
                return None
            self.retries += 1
        if retry_after is not None:
            delay = min(retry_after, policy.retry_after_cap)
        else:
            delay = policy.backoff(self.retries)
        elapsed = policy.clock() - self.started
        if elapsed + delay > policy.total_budget:
            return None
        return delay

    def elapsed(self) -> float:
        return self.policy.clock() - self.started

    async def wait(self, delay: float) -> None:
        await self.policy.sleep(delay)


async def create_at_most_once(
    policy: RetryPolicy,
    send: Callable[[], Awaitable[T]],
    find: Callable[[], Awaitable[T | None]],
) -> T:
    """Run a non-idempotent request so that it takes effect at most once.

    ``send`` performs the request (the session already re-sends it when the
    server said it did not process it). When its answer is lost
    (``OutcomeUnknownError``, a 503 included), ``find`` looks for what the
    request would have made; if found, that is the result, otherwise the request
    is sent again after a backoff (or the 503's ``Retry-After``). A 409 after a
    lost answer also triggers the look-up: the first attempt may have landed
    after the look-up ran.
    """
    budget = policy.begin()
    answer_lost = False
    while True:
        try:
            return await send()
        except OutcomeUnknownError as exc:
            answer_lost = True
            found = await find()
            if found is not None:
                return found
            delay = budget.next_delay(exc.retry_after)
            if delay is None:
                raise
            await budget.wait(delay)
        except ConflictError:
            if answer_lost:
                found = await find()
                if found is not None:
                    return found
            raise
