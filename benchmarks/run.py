"""kaizenctl's speed against the lower bound the API allows: requests, wall time, memory.

    python -m benchmarks.run                # the full set (takes a few minutes)
    python -m benchmarks.run --quick        # a tenth of it, for a smoke run
    python3 dev.py bench                    # the same, from a fresh clone

It generates a set (default: 1,000 agents, 100 pipelines of 10 nodes, 100
policies, 50 deployments in promotion chains), starts the reference server as
a separate process with a fixed added latency per request, and measures:

* ``kaizenctl apply`` from an empty server, then ``kaizenctl plan`` once live
  state matches — each as a real process: wall time, CPU time and peak RSS;
* the same two through the library (``apply_async`` / ``plan_async``) in this
  process, which leaves out interpreter start-up and imports;
* ``validate`` of 1,000 manifests (``benchmarks.bench_validate``'s set) and the
  cold start of ``kaizenctl --help``.

Requests are counted from the server's request log. The lower bounds:

* minimum requests (CONTRACT.md): a plan needs a login, every list page
  (``ceil(n / 100)``, at least one per kind) and, per pipeline, its nodes and
  its connections. An apply from empty needs that plan, one create per
  resource, one graph write per pipeline, and per deployment one deploy or
  promote plus at least one read (a deployment starts ``pending``).
* minimum wall time: ``max(min requests x latency / parallelism, depth x
  latency)``, the depth being the longest chain of requests that must wait for
  one another (login; list page 1, then the other pages; graphs; creates;
  graph writes; then deploy, read, promote, read, promote, read).

The figures are printed as a Markdown table and written to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_validate import write_manifests
from benchmarks.generate import SetShape, write_set
from benchmarks.serverproc import KAIZENCTL, ServerProcess, server_process

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 100
FULL = SetShape(agents=1000, pipelines=100, nodes_per_pipeline=10, policies=100, deployments=50)
QUICK = SetShape(agents=100, pipelines=10, nodes_per_pipeline=10, policies=10, deployments=5)
TARGET_RATIO = 1.5
TARGET_MEMORY_MB = 200.0
TARGET_HELP_S = 0.3
PLAN_REQUEST_SLACK = 10


def pages(count: int) -> int:
    """List pages a kind takes; an empty list is still one request."""
    return max(1, math.ceil(count / PAGE_SIZE))


def list_rounds(count: int) -> int:
    """Sequential rounds to read a list: page 1 says how many more, which go together."""
    return 1 if pages(count) == 1 else 2


@dataclass(frozen=True)
class Bounds:
    requests: int
    depth: int

    def seconds(self, latency_s: float, parallelism: int) -> float:
        return max(self.requests * latency_s / parallelism, self.depth * latency_s)


def plan_bounds(shape: SetShape) -> Bounds:
    """Plan against live state that already holds ``shape``."""
    list_pages = sum(
        pages(n) for n in (shape.agents, shape.pipelines, shape.policies, shape.deployments)
    )
    requests = 1 + list_pages + 2 * shape.pipelines
    graph_rounds = 1 if shape.pipelines else 0
    depth = 1 + max(
        list_rounds(shape.agents),
        list_rounds(shape.policies),
        list_rounds(shape.deployments),
        list_rounds(shape.pipelines) + graph_rounds,
    )
    return Bounds(requests, depth)


def apply_bounds(shape: SetShape) -> Bounds:
    """Apply (plan included) from an empty server."""
    requests = (
        1  # login
        + 4  # one empty list page per kind
        + shape.agents
        + shape.pipelines
        + shape.policies  # creates
        + shape.pipelines  # graph writes
        + 2 * shape.deployments  # deploy or promote, then at least one read
    )
    depth = 1 + 1 + 1 + (1 if shape.pipelines else 0) + 2 * shape.chain_depth
    return Bounds(requests, depth)


@dataclass
class Measurement:
    name: str
    wall_s: float
    requests: int
    bounds: Bounds | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    exit_code: int = 0
    server_cpu_s: float | None = None
    by_endpoint: Counter[str] = field(default_factory=Counter)


def endpoint(entry: dict[str, Any]) -> str:
    """``GET /pipelines/{id}/nodes`` from a logged request."""
    parts = str(entry["path"]).removeprefix("/api/v1").split("/")
    # Ids are the segments after a collection name; keep the shape only.
    shaped = [part if index % 2 == 1 or index == 0 else "{id}" for index, part in enumerate(parts)]
    if len(parts) > 1 and parts[1] == "auth":
        shaped = parts
    return f"{entry['method']} {'/'.join(shaped)}"


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds a process has used so far (Linux /proc), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _since(pid: int, before: float | None) -> float | None:
    after = process_cpu_s(pid)
    return after - before if after is not None and before is not None else None


def run_process(args: list[str], env: dict[str, str]) -> tuple[int, float, float, float, str]:
    """(exit code, wall s, cpu s, peak RSS MB, stderr) of one child process, via wait4."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    # Linux reports ru_maxrss in KiB.
    return (
        process.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        stderr,
    )


def measure_cli(
    name: str,
    server: ServerProcess,
    args: list[str],
    bounds: Bounds | None,
    *,
    ok_codes: tuple[int, ...] = (0,),
) -> Measurement:
    server.clear_request_log()
    server_cpu = process_cpu_s(server.pid)
    code, wall, cpu, rss, stderr = run_process([str(KAIZENCTL), *args], server.client_env())
    server_cpu_s = _since(server.pid, server_cpu)
    if code not in ok_codes:
        raise SystemExit(f"{name}: kaizenctl exited {code}:\n{stderr}")
    log = server.request_log()
    return Measurement(
        name,
        wall,
        len(log),
        bounds,
        cpu,
        rss,
        code,
        server_cpu_s,
        Counter(endpoint(entry) for entry in log),
    )


def measure_library(
    name: str,
    server: ServerProcess,
    manifests: Path,
    bounds: Bounds,
    parallelism: int,
    *,
    apply: bool,
) -> Measurement:
    from kaizenctl.api.connect import open_api
    from kaizenctl.api.settings import ConnectionSettings
    from kaizenctl.manifests.loader import load_manifests
    from kaizenctl.reconcile import apply_async, plan_async

    resources = list(load_manifests([str(manifests)], environ={}).resources)
    settings = ConnectionSettings(
        api_url=server.url, email=server.email, password=server.password, parallelism=parallelism
    )

    async def run() -> None:
        async with open_api(settings) as api:
            if apply:
                _plan, result = await apply_async(api, resources)
                if not result.ok:
                    failed = result.with_status("failed")
                    raise SystemExit(f"{name}: {len(failed)} actions failed: {failed[:3]}")
            else:
                await plan_async(api, resources)

    server.clear_request_log()
    server_cpu = process_cpu_s(server.pid)
    started = time.perf_counter()
    cpu_started = time.process_time()
    asyncio.run(run())
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    server_cpu_s = _since(server.pid, server_cpu)
    log = server.request_log()
    return Measurement(
        name,
        wall,
        len(log),
        bounds,
        cpu,
        server_cpu_s=server_cpu_s,
        by_endpoint=Counter(endpoint(e) for e in log),
    )


def measure_help(runs: int) -> list[float]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(KAIZENCTL), "--help"], env=env, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return timings


def measure_validate(runs: int, count: int) -> tuple[float, float, float]:
    """(median in-process load_manifests s, CLI wall s, CLI peak RSS MB) for ``count`` manifests."""
    from kaizenctl.manifests.loader import load_manifests

    with tempfile.TemporaryDirectory() as folder:
        write_manifests(Path(folder), count)
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            loaded = load_manifests([folder], environ={})
            timings.append(time.perf_counter() - started)
        assert len(loaded.resources) == count
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
        code, wall, _cpu, rss, stderr = run_process([str(KAIZENCTL), "validate", folder], env)
        if code != 0:
            raise SystemExit(f"validate failed: {stderr}")
    return statistics.median(timings), wall, rss


def _ratio(value: float, bound: float) -> str:
    return f"{value / bound:.2f}x" if bound > 0 else "-"


def render(
    shape: SetShape,
    latency_ms: float,
    parallelism: int,
    rows: list[Measurement],
    help_timings: list[float],
    validate: tuple[float, float, float],
    validate_count: int,
) -> str:
    latency_s = latency_ms / 1000
    lines = [
        "# kaizenctl benchmark results",
        "",
        f"Set: {shape.agents:,} agents, {shape.pipelines} pipelines of "
        f"{shape.nodes_per_pipeline} nodes, {shape.policies} policies, "
        f"{shape.deployments} deployments (promotion chains of {shape.chain_depth}); "
        f"{shape.resources:,} manifests.",
        f"Server: `kaizenctl serve` in its own process, {latency_ms:g} ms added per request; "
        f"client parallelism {parallelism}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "| Run | Requests | Min requests | Depth | Wall | Lower bound | Wall / bound "
        "| Client CPU | Server CPU | Peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        bound_s = row.bounds.seconds(latency_s, parallelism) if row.bounds else 0.0
        lines.append(
            f"| {row.name} | {row.requests:,} | "
            + (f"{row.bounds.requests:,} | {row.bounds.depth} | " if row.bounds else "- | - | ")
            + f"{row.wall_s:.2f} s | "
            + (f"{bound_s:.2f} s | {_ratio(row.wall_s, bound_s)} | " if row.bounds else "- | - | ")
            + (f"{row.cpu_s:.2f} s | " if row.cpu_s is not None else "- | ")
            + (f"{row.server_cpu_s:.2f} s | " if row.server_cpu_s is not None else "- | ")
            + (f"{row.peak_rss_mb:.0f} MB |" if row.peak_rss_mb is not None else "- |")
        )
    in_process, cli_wall, cli_rss = validate
    help_median = statistics.median(help_timings)
    lines += [
        f"| validate {validate_count:,} manifests (library) | 0 | 0 | - | {in_process:.2f} s "
        "| - | - | - | - | - |",
        f"| validate {validate_count:,} manifests (CLI) | 0 | 0 | - | {cli_wall:.2f} s "
        f"| - | - | - | - | {cli_rss:.0f} MB |",
        f"| `kaizenctl --help` (median of {len(help_timings)}) | 0 | 0 | - | "
        f"{help_median:.3f} s | - | - | - | - | - |",
        "",
        "Requests by endpoint:",
        "",
    ]
    for row in rows:
        detail = ", ".join(f"{name} x{n}" for name, n in sorted(row.by_endpoint.items()))
        lines.append(f"- {row.name}: {detail}")
    lines += ["", "Targets:", ""]
    lines += _targets(shape, rows, latency_s, parallelism, help_median)
    return "\n".join(lines) + "\n"


def _targets(
    shape: SetShape,
    rows: list[Measurement],
    latency_s: float,
    parallelism: int,
    help_median: float,
) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    found = {row.name: row for row in rows}
    out: list[str] = []
    plan_cli = found.get("plan, no changes (CLI)")
    if plan_cli is not None:
        limit = (
            sum(
                pages(n) for n in (shape.agents, shape.pipelines, shape.policies, shape.deployments)
            )
            + 2 * shape.pipelines
            + PLAN_REQUEST_SLACK
        )
        out.append(
            f"- plan requests <= list pages + 2 per pipeline + {PLAN_REQUEST_SLACK} = {limit}: "
            f"{plan_cli.requests} ({verdict(plan_cli.requests <= limit)})"
        )
    for row in rows:
        if row.bounds is None:
            continue
        bound = row.bounds.seconds(latency_s, parallelism)
        out.append(
            f"- {row.name} within {TARGET_RATIO}x its lower bound: {_ratio(row.wall_s, bound)} "
            f"({verdict(row.wall_s <= TARGET_RATIO * bound)})"
        )
    for row in rows:
        if row.peak_rss_mb is not None:
            out.append(
                f"- {row.name} peak memory < {TARGET_MEMORY_MB:.0f} MB: "
                f"{row.peak_rss_mb:.0f} MB ({verdict(row.peak_rss_mb < TARGET_MEMORY_MB)})"
            )
    out.append(
        f"- `kaizenctl --help` < {TARGET_HELP_S} s: {help_median:.3f} s "
        f"({verdict(help_median < TARGET_HELP_S)})"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kaizenctl benchmarks against the lower bound.")
    parser.add_argument("--quick", action="store_true", help="a tenth of the set, for a smoke run")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--help-runs", type=int, default=9)
    parser.add_argument("--validate-count", type=int, default=1000)
    parser.add_argument(
        "--out", type=Path, default=HERE / "RESULTS.md", help="where to write the table"
    )
    options = parser.parse_args(argv)
    shape = QUICK if options.quick else FULL
    latency_ms: float = options.latency_ms
    parallelism: int = options.parallelism
    common = ["--parallelism", str(parallelism)]
    progress: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory() as folder:
        manifests = write_set(Path(folder) / "set", shape, prefix="bench")
        progress(f"set of {shape.resources} manifests written; measuring the CLI")
        with server_process(latency_ms=latency_ms) as server:
            rows.append(
                measure_cli(
                    "apply from empty (CLI)",
                    server,
                    ["apply", "--auto-approve", *common, str(manifests)],
                    apply_bounds(shape),
                )
            )
            rows.append(
                measure_cli(
                    "plan, no changes (CLI)",
                    server,
                    ["plan", "--detailed-exitcode", *common, str(manifests)],
                    plan_bounds(shape),
                )
            )
        progress("measuring the library (no interpreter start-up)")
        with server_process(latency_ms=latency_ms) as server:
            rows.append(
                measure_library(
                    "apply from empty (library)",
                    server,
                    manifests,
                    apply_bounds(shape),
                    parallelism,
                    apply=True,
                )
            )
            rows.append(
                measure_library(
                    "plan, no changes (library)",
                    server,
                    manifests,
                    plan_bounds(shape),
                    parallelism,
                    apply=False,
                )
            )
    progress("measuring validate and --help")
    validate = measure_validate(3, options.validate_count)
    help_timings = measure_help(options.help_runs)
    table = render(
        shape, latency_ms, parallelism, rows, help_timings, validate, options.validate_count
    )
    print(table)
    options.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
