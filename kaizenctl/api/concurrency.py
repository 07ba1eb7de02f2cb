"""How many requests may be in flight: additive increase, multiplicative decrease (AIMD).

A fixed parallelism is either too timid for a server that could take more or
too pushy for one that is busy. ``AdaptiveLimit`` starts at ``INITIAL_LIMIT``
(or the ceiling, if lower) and learns, as TCP does:

* every request answered without push-back raises the limit: by one per answer
  until the first push-back (slow start: the limit doubles each round trip),
  then by one per round trip's worth of answers;
* a 429 or 503 (the server asking the client to slow down) halves it, at most
  once per window: answers to requests sent before the last decrease say
  nothing new, so a burst of 429s from one window is one signal, not ten;
* it never exceeds the ceiling (``--parallelism``), nor drops below 1.

The request that was pushed back is retried by the session's retry policy
(after its ``Retry-After``); the limit only decides how many go at once.
Slots are handed out in arrival order, and a slot is held only while a request
is on the wire, never while it waits to retry.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque

INITIAL_LIMIT = 10


class Outcome(enum.Enum):
    """What an attempt says about the server's capacity."""

    ANSWERED = "answered"  # any answer that is not push-back: room for more
    PUSHED_BACK = "pushed_back"  # 429 or 503: too many
    FAILED = "failed"  # no answer (transport error): says nothing about capacity


class AdaptiveLimit:
    """At most ``allowed`` requests in flight; ``allowed`` follows AIMD within [1, ceiling]."""

    def __init__(self, ceiling: int, *, initial: int = INITIAL_LIMIT) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be at least 1, not {ceiling}")
        self.ceiling = ceiling
        self.limit = float(max(1, min(ceiling, initial)))
        # Slow start lasts until the first push-back sets a threshold.
        self.threshold = float(ceiling)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.decreases = 0
        self._window = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> int:
        """Wait for a slot; returns the window it was granted in (pass it to ``release``)."""
        if self.in_flight < self.allowed and not self._waiters:
            self.in_flight += 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # The slot was handed over just as the caller was cancelled: give it back.
                    self.in_flight -= 1
                    self._hand_over()
                else:
                    self._waiters.remove(waiter)
                raise
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self._window

    def release(self, window: int, outcome: Outcome) -> None:
        """Free a slot and learn from how its request went."""
        self.in_flight -= 1
        if outcome is Outcome.PUSHED_BACK:
            if window == self._window:
                self.limit = max(1.0, self.limit / 2)
                self.threshold = self.limit
                self._window += 1
                self.decreases += 1
        elif outcome is Outcome.ANSWERED and self.limit < self.ceiling:
            step = 1.0 if self.limit < self.threshold else 1.0 / self.limit
            self.limit = min(float(self.ceiling), self.limit + step)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self.in_flight < self.allowed:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while queued
                continue
            self.in_flight += 1
            waiter.set_result(None)
