"""Progress of a long apply where nobody watches a terminal (a CI log).

On a terminal each finished action prints a line as it happens. Elsewhere that
would be noise, but silence is worse: a 45 s apply in CI showed nothing until
the end. So outside a terminal a heartbeat line is printed every
``PROGRESS_INTERVAL_S`` seconds, saying what is still running and for how long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from kaizenctl.reconcile.plan import Action

PROGRESS_INTERVAL_S = 30.0
# Running actions named in one heartbeat line; the rest are counted.
MAX_NAMED = 3

_DOING = {
    "create": "creating",
    "update": "updating",
    "delete": "deleting",
    "replace-graph": "writing the graph of",
    "deploy": "deploying",
    "promote": "promoting",
    "rollback": "rolling back",
}


def _doing(action: Action) -> str:
    """"deploying Deployment/support-dev: support in development …", "creating Agent/x"."""
    what = action.summary if action.kind == "Deployment" else action.ref
    return f"{_DOING.get(action.verb, action.verb)} {what}"


class Heartbeat:
    """What an apply is doing, told every ``interval`` seconds by ``run``."""

    def __init__(
        self,
        total: int,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.total = total
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self.clock = clock
        self.sleep = sleep
        self.began = clock()
        self.finished_count = 0
        self.running: dict[str, tuple[Action, float]] = {}

    def started(self, action: Action) -> None:
        self.running[action.id] = (action, self.clock())

    def finished(self, action: Action) -> None:
        self.running.pop(action.id, None)
        self.finished_count += 1

    def line(self) -> str:
        now = self.clock()
        head = f"… {now - self.began:.0f} s: {self.finished_count}/{self.total} actions finished"
        if not self.running:
            return head
        oldest_first = sorted(self.running.values(), key=lambda item: item[1])
        named = [
            f"{_doing(action)} ({now - since:.0f} s)"
            for action, since in oldest_first[:MAX_NAMED]
        ]
        more = len(oldest_first) - MAX_NAMED
        return f"{head}; still {'; '.join(named)}" + (f"; and {more} more" if more > 0 else "")

    async def run(self, echo: Callable[[str], None]) -> None:
        """Print ``line()`` every interval until cancelled."""
        while True:
            await self.sleep(self.interval)
            echo(self.line())
