"""Where a cold ``kaizenctl plan`` spends its CPU, phase by phase, in one fresh process.

    python benchmarks/phases.py MANIFESTS [--stop-after PHASE]   # KAIZEN_API_URL etc. set

It does what ``kaizenctl plan`` does, in the same order, and prints one JSON
object of client CPU seconds (``time.process_time``) per phase:

* ``libraries``: importing the third-party packages a plan needs (aiohttp,
  httpx, pydantic, click, PyYAML) — the floor no change to kaizenctl lowers;
* ``kaizenctl``: importing kaizenctl's own modules on the plan's path;
* ``load``: reading, parsing and validating the manifests;
* ``fetch_and_diff``: logging in, reading live state and building the plan;
* ``render``: the text plan.

Interpreter start-up is measured by the caller (``benchmarks.run``), from a
process that does nothing. ``--stop-after PHASE`` ends the run after that phase,
so that a counter that sees only whole processes can be read by difference:
``valgrind --tool=callgrind python benchmarks/phases.py SET --stop-after load``
less the same with ``--stop-after kaizenctl`` is the loading's instructions (a
count that, unlike CPU time, does not move with the machine's load). The GC
setting is the CLI's own (``kaizenctl.cli``).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    stop_after = argv[argv.index("--stop-after") + 1] if "--stop-after" in argv else None
    from kaizenctl import CLI_GC_THRESHOLDS  # the package's __init__ only

    gc.set_threshold(*CLI_GC_THRESHOLDS)
    figures: dict[str, float] = {}
    mark = time.process_time()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.process_time()
        figures[name] = round(now - mark, 4)
        mark = now
        if name == stop_after:
            print(json.dumps(figures))
            raise SystemExit(0)

    import asyncio

    import aiohttp  # noqa: F401
    import click  # noqa: F401
    import httpx  # noqa: F401
    import httpx_aiohttp  # noqa: F401
    import pydantic  # noqa: F401
    import yaml  # noqa: F401

    lap("libraries")

    import kaizenctl.cli
    import kaizenctl.commands.plan  # noqa: F401
    from kaizenctl.api.connect import open_api
    from kaizenctl.commands.common import build_plan_options, load_resources, plan_with_progress
    from kaizenctl.commands.options import settings_from_options
    from kaizenctl.render import render_plan

    lap("kaizenctl")
    resources = load_resources((argv[0],))
    lap("load")
    options = build_plan_options(prune=False, targets=(), allow_delete_all=False)
    settings = settings_from_options()

    async def run() -> Any:
        async with open_api(settings) as api:
            plan, _live = await plan_with_progress(api, resources, options, settings.api_url)
            return plan

    plan = asyncio.run(run())
    lap("fetch_and_diff")
    render_plan(plan, "text", color=False, context=None)
    lap("render")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
