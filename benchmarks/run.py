"""kaizenctl's speed against the lower bound the API allows: requests, wall time, CPU, memory.

    python -m benchmarks.run                # everything (a few minutes)
    python -m benchmarks.run --quick        # a tenth of the set, one run each, no scaling
    python3 dev.py bench                    # the same, from a fresh clone

It generates a set (default: 1,000 agents, 100 pipelines of 10 nodes, 100
policies, 50 deployments in promotion chains), starts the reference server as
a separate process pinned to its own CPU (the client runs on the others, so
the server's work never lands on the client's clock), and measures, each run
``--runs`` times (default 3) and reported as the median:

* ``kaizenctl apply`` from an empty server, ``kaizenctl plan`` once live state
  matches (at 20 ms of added latency, and at 0 ms), as real processes: wall
  time, CPU time and peak RSS (``wait4``);
* the same apply and plan through the library, which leaves out interpreter
  start-up and imports;
* adaptive concurrency: ``apply`` against a server that allows only
  ``--in-flight-limit`` requests at once and answers 429 + Retry-After past it,
  with ``--parallelism 10`` and with the default (adaptive up to 64);
* ``validate`` of 1,000 manifests and the cold start of ``kaizenctl --help``;
* scaling: ``plan`` of 1k / 5k / 10k resources (client CPU and peak memory).

Requests are counted from the server's request log. The lower bounds:

* minimum requests (CONTRACT.md): a plan needs a login, every list page
  (``ceil(n / 100)``, at least one per kind), the set's records (one list,
  docs/ownership.md) and, per pipeline, its nodes and its connections. An apply
  from empty needs that plan, the set lock (take and release), the ownership
  record written before the first create and confirmed after, one create per
  resource, one graph write per pipeline, and per deployment one deploy or
  promote plus at least one read (a deployment starts ``pending``).
* minimum wall time: ``max(min requests x latency / parallelism, depth x
  latency)``, the depth being the longest chain of requests that must wait for
  one another (login; list page 1, then the other pages; graphs; creates;
  graph writes; then deploy, read, promote, read, promote, read).

The figures are printed as Markdown and written to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_validate import write_manifests
from benchmarks.clientenv import client_install
from benchmarks.generate import SetShape, write_set
from benchmarks.serverproc import ServerProcess, cpu_split, pinned_to, server_process

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 100
FULL = SetShape(agents=1000, pipelines=100, nodes_per_pipeline=10, policies=100, deployments=50)
QUICK = SetShape(agents=100, pipelines=10, nodes_per_pipeline=10, policies=10, deployments=5)
# Scaling sets keep FULL's mix: per 1,000 resources 800 agents, 80 pipelines, 80 policies, 40
# deployments.
SCALES = (1, 5, 10)
TARGET_RATIO = 1.5
TARGET_PLAN_0MS_S = 0.6
TARGET_VALIDATE_S = 0.25
TARGET_HELP_S = 0.1
TARGET_10K_CPU_S = 3.0
TARGET_10K_MEMORY_MB = 300.0
PLAN_REQUEST_SLACK = 10
ADAPTIVE_LATENCY_MS = 50.0
PHASES = ("startup", "libraries", "kaizenctl", "load", "fetch_and_diff", "render")
PHASE_NAMES = {
    "startup": "interpreter start-up (`python -c pass`)",
    "libraries": "importing aiohttp, httpx, pydantic, click, PyYAML",
    "kaizenctl": "importing kaizenctl's plan path",
    "load": "loading the manifests",
    "fetch_and_diff": "log in, read live state, diff",
    "render": "rendering the plan",
}
DIALECT_PROBE = "/pipelines/patterns"
SPLIT = cpu_split()
# The client processes run from a virtualenv installed as users install it
# (benchmarks/clientenv.py); set by main() before anything is measured.
CLIENT_BIN = Path(sys.executable).parent
CLIENT_CPUS = SPLIT[0] if SPLIT else None


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
    requests = 1 + list_pages + 1 + 2 * shape.pipelines  # the 1: the set's records
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
        + 1  # the set's records
        + 2  # the set lock: taken before the plan, released after the last write
        + 2  # the ownership record: intents before the first create, ids after the last
        + shape.agents
        + shape.pipelines
        + shape.policies  # creates
        + shape.pipelines  # graph writes
        + 2 * shape.deployments  # deploy or promote, then at least one read
    )
    # login, lock, lists, record, creates, graphs, deploys..., record, release
    depth = 1 + 1 + 1 + 1 + 1 + (1 if shape.pipelines else 0) + 2 * shape.chain_depth + 2
    return Bounds(requests, depth)


@dataclass
class Measurement:
    """One run: wall and CPU seconds, peak RSS, what the server saw."""

    wall_s: float
    requests: int
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    server_cpu_s: float | None = None
    by_endpoint: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failed: int = 0


@dataclass
class Row:
    """The median of several runs of one measurement, against its bound."""

    name: str
    runs: list[Measurement]
    bounds: Bounds | None = None
    latency_ms: float = 0.0
    parallelism: int = 10

    @property
    def bound_s(self) -> float:
        return self.bounds.seconds(self.latency_ms / 1000, self.parallelism) if self.bounds else 0.0

    def median(self, value: Callable[[Measurement], float | None]) -> float | None:
        values = [v for v in (value(run) for run in self.runs) if v is not None]
        return statistics.median(values) if values else None

    @property
    def wall_s(self) -> float:
        return statistics.median(run.wall_s for run in self.runs)

    @property
    def ratio(self) -> float | None:
        bound = self.bound_s
        # The median of the runs' own ratios: each run against the same bound.
        return statistics.median(run.wall_s / bound for run in self.runs) if bound > 0 else None

    @property
    def last(self) -> Measurement:
        return self.runs[-1]


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
    """(exit code, wall s, cpu s, peak RSS MB, stderr + stdout's tail) of one child, via wait4."""
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=errors,
            preexec_fn=pinned_to(CLIENT_CPUS),
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
        if process.returncode not in (0, 2):
            output.seek(0)
            stderr += "\n--- stdout (tail) ---\n" + output.read().decode(errors="replace")[-3000:]
    # Linux reports ru_maxrss in KiB.
    return (
        process.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        stderr,
    )


def _observed(server: ServerProcess, server_cpu: float | None) -> dict[str, Any]:
    log = server.request_log()
    return {
        "requests": len(log),
        "server_cpu_s": _since(server.pid, server_cpu),
        "by_endpoint": Counter(endpoint(entry) for entry in log),
        "statuses": Counter(int(entry["status"]) for entry in log),
        # Answers >= 400 but 429 (retried) and the dialect probe's 401 (`--dialect auto`
        # asks GET /pipelines/patterns without a token; a contract server refuses it).
        "failed": sum(
            1
            for entry in log
            if int(entry["status"]) >= 400
            and int(entry["status"]) != 429
            and not (entry["path"].endswith(DIALECT_PROBE) and int(entry["status"]) == 401)
        ),
    }


def measure_cli(
    name: str, server: ServerProcess, args: list[str], *, ok_codes: tuple[int, ...] = (0,)
) -> Measurement:
    server.clear_request_log()
    server_cpu = process_cpu_s(server.pid)
    code, wall, cpu, rss, stderr = run_process(
        [str(CLIENT_BIN / "kaizenctl"), *args], server.client_env()
    )
    observed = _observed(server, server_cpu)
    if code not in ok_codes:
        raise SystemExit(f"{name}: kaizenctl exited {code}:\n{stderr}")
    return Measurement(wall, cpu_s=cpu, peak_rss_mb=rss, **observed)


def measure_phases(server: ServerProcess, manifests: Path) -> dict[str, float]:
    """Client CPU of one cold plan by phase (benchmarks/phases.py) and of interpreter start-up."""
    python = str(CLIENT_BIN / "python")
    env = server.client_env()
    _code, _wall, startup, _rss, _stderr = run_process([python, "-c", "pass"], env)
    # Run as a script, so that kaizenctl is imported from the client install, not the checkout.
    done = subprocess.run(
        [python, str(HERE / "phases.py"), str(manifests)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=pinned_to(CLIENT_CPUS),
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"startup": startup, **figures}


@contextmanager
def client_cpus() -> Iterator[None]:
    """Run this process on the client's CPUs for an in-process measurement."""
    if CLIENT_CPUS is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, CLIENT_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measure_library(
    name: str, server: ServerProcess, manifests: Path, parallelism: int, *, apply: bool
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
    with client_cpus():
        started = time.perf_counter()
        cpu_started = time.process_time()
        asyncio.run(run())
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return Measurement(wall, cpu_s=cpu, **_observed(server, server_cpu))


def measure_help(runs: int) -> list[float]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [str(CLIENT_BIN / "kaizenctl"), "--help"],
            env=env,
            check=True,
            capture_output=True,
            preexec_fn=pinned_to(CLIENT_CPUS),
        )
        timings.append(time.perf_counter() - started)
    return timings


@dataclass
class ValidateFigures:
    library_s: float
    cli_wall_s: float
    cli_cpu_s: float
    cli_rss_mb: float


def measure_validate(runs: int, count: int) -> ValidateFigures:
    """Medians of ``runs`` in-process ``load_manifests`` and CLI ``validate`` of ``count``."""
    from kaizenctl.manifests.loader import load_manifests

    with tempfile.TemporaryDirectory() as folder:
        write_manifests(Path(folder), count)
        timings = []
        with client_cpus():
            for _ in range(runs):
                started = time.perf_counter()
                loaded = load_manifests([folder], environ={})
                timings.append(time.perf_counter() - started)
        assert len(loaded.resources) == count
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
        cli: list[tuple[float, float, float]] = []
        for _ in range(runs):
            code, wall, cpu, rss, stderr = run_process(
                [str(CLIENT_BIN / "kaizenctl"), "validate", folder], env
            )
            if code != 0:
                raise SystemExit(f"validate failed: {stderr}")
            cli.append((wall, cpu, rss))
    return ValidateFigures(
        statistics.median(timings),
        statistics.median(c[0] for c in cli),
        statistics.median(c[1] for c in cli),
        max(c[2] for c in cli),
    )


def scaled(thousands: int) -> SetShape:
    return SetShape(
        agents=800 * thousands,
        pipelines=80 * thousands,
        nodes_per_pipeline=10,
        policies=80 * thousands,
        deployments=40 * thousands,
    )


def _fmt(value: float | None, unit: str, digits: int = 2) -> str:
    return f"{value:.{digits}f} {unit}" if value is not None else "-"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


@dataclass
class Report:
    shape: SetShape
    latency_ms: float
    parallelism: int
    runs: int
    in_flight_limit: int
    rows: list[Row] = field(default_factory=list)
    adaptive: list[Row] = field(default_factory=list)
    scaling: list[tuple[SetShape, Row, Row]] = field(default_factory=list)
    validate: ValidateFigures | None = None
    validate_count: int = 1000
    help_timings: list[float] = field(default_factory=list)
    # Client CPU of a cold plan at 0 ms, by phase (benchmarks/phases.py), one dict a run.
    phases: list[dict[str, float]] = field(default_factory=list)

    def find(self, name: str) -> Row | None:
        return next((row for row in self.rows if row.name == name), None)

    def render(self) -> str:
        shape = self.shape
        pinning = (
            f"server pinned to CPU {sorted(SPLIT[1])}, client to {sorted(SPLIT[0])}"
            if SPLIT
            else "no CPU pinning (one CPU)"
        )
        lines = [
            "# kaizenctl benchmark results",
            "",
            f"Set: {shape.agents:,} agents, {shape.pipelines} pipelines of "
            f"{shape.nodes_per_pipeline} nodes, {shape.policies} policies, "
            f"{shape.deployments} deployments (promotion chains of {shape.chain_depth}); "
            f"{shape.resources:,} manifests.",
            f"Server: `kaizenctl serve` in its own process ({pinning}). Each figure is the "
            f"median of {self.runs} runs; a ratio is each run's wall time over the bound, "
            f"median. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}.",
            "",
            "| Run | Requests | Min requests | Wall | Lower bound | Wall / bound "
            "| Client CPU | Server CPU | Peak RSS |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.name} | {row.last.requests:,} | "
                + (f"{row.bounds.requests:,} | " if row.bounds else "- | ")
                + f"{row.wall_s:.2f} s | "
                + (f"{row.bound_s:.2f} s | {row.ratio:.2f}x | " if row.ratio else "- | - | ")
                + f"{_fmt(row.median(lambda m: m.cpu_s), 's')} | "
                + f"{_fmt(row.median(lambda m: m.server_cpu_s), 's')} | "
                + f"{_fmt(row.median(lambda m: m.peak_rss_mb), 'MB', 0)} |"
            )
        if self.validate is not None:
            v = self.validate
            lines.append(
                f"| validate {self.validate_count:,} manifests (library) | 0 | 0 | "
                f"{v.library_s:.3f} s | - | - | - | - | - |"
            )
            lines.append(
                f"| validate {self.validate_count:,} manifests (CLI) | 0 | 0 | "
                f"{v.cli_wall_s:.3f} s | - | - | {v.cli_cpu_s:.2f} s | - | {v.cli_rss_mb:.0f} MB |"
            )
        if self.help_timings:
            lines.append(
                f"| `kaizenctl --help` (median of {len(self.help_timings)}) | 0 | 0 | "
                f"{statistics.median(self.help_timings):.3f} s | - | - | - | - | - |"
            )
        if self.adaptive:
            lines += [
                "",
                f"Adaptive concurrency: a server that allows {self.in_flight_limit} requests in "
                f"flight and answers 429 (Retry-After: 1) past that, {ADAPTIVE_LATENCY_MS:g} ms "
                "added latency, apply from empty:",
                "",
                "| Run | Requests | 429 answers (retried) | Failed | Wall | vs --parallelism 10 "
                "| Client CPU |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            baseline = self.adaptive[0].wall_s
            for row in self.adaptive:
                failed = row.last.failed
                lines.append(
                    f"| {row.name} | {row.last.requests:,} | {row.last.statuses[429]:,} | "
                    f"{failed} | {row.wall_s:.2f} s | {baseline / row.wall_s:.2f}x faster | "
                    f"{_fmt(row.median(lambda m: m.cpu_s), 's')} |"
                )
        if self.phases:
            total = sum(statistics.median(run[p] for run in self.phases) for p in PHASES)
            lines += [
                "",
                "Where a cold plan's client CPU goes (no changes, 0 ms latency; "
                "`benchmarks/phases.py`, median of each phase):",
                "",
                "| Phase | Client CPU | Share |",
                "|---|---:|---:|",
            ]
            for phase in PHASES:
                spent = statistics.median(run[phase] for run in self.phases)
                lines.append(f"| {PHASE_NAMES[phase]} | {spent:.3f} s | {spent / total:.0%} |")
            lines.append(f"| all | {total:.3f} s | 100% |")
        if self.scaling:
            lines += [
                "",
                "Scaling (latency 0; plan with no changes, CLI; apply from empty once to seed):",
                "",
                "| Resources | Plan requests | Plan wall | Plan client CPU | CPU per 1k "
                "| Plan peak RSS | Apply wall | Apply client CPU |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for shape_n, plan_row, apply_row in self.scaling:
                cpu = plan_row.median(lambda m: m.cpu_s) or 0.0
                lines.append(
                    f"| {shape_n.resources:,} | {plan_row.last.requests:,} | "
                    f"{plan_row.wall_s:.2f} s | {cpu:.2f} s | "
                    f"{cpu / (shape_n.resources / 1000):.2f} s | "
                    f"{_fmt(plan_row.median(lambda m: m.peak_rss_mb), 'MB', 0)} | "
                    f"{apply_row.wall_s:.2f} s | "
                    f"{_fmt(apply_row.median(lambda m: m.cpu_s), 's')} |"
                )
        lines += ["", "Requests by endpoint:", ""]
        for row in self.rows:
            detail = ", ".join(f"{name} x{n}" for name, n in sorted(row.last.by_endpoint.items()))
            lines.append(f"- {row.name}: {detail}")
        lines += ["", "Targets:", ""]
        lines += self.targets()
        return "\n".join(lines) + "\n"

    def targets(self) -> list[str]:
        out: list[str] = []
        shape = self.shape
        plan_cli = self.find("plan, no changes (CLI)")
        if plan_cli is not None:
            limit = plan_bounds(shape).requests - 1 + PLAN_REQUEST_SLACK
            out.append(
                f"- plan requests <= list pages + 2 per pipeline + {PLAN_REQUEST_SLACK} = {limit}: "
                f"{plan_cli.last.requests} ({_verdict(plan_cli.last.requests <= limit)})"
            )
        for row in self.rows:
            if row.ratio is not None:
                out.append(
                    f"- {row.name} within {TARGET_RATIO}x its lower bound: {row.ratio:.2f}x "
                    f"({_verdict(row.ratio <= TARGET_RATIO)})"
                )
        plan_0 = self.find("plan, no changes, 0 ms latency (CLI)")
        if plan_0 is not None:
            out.append(
                f"- plan at 0 ms latency <= {TARGET_PLAN_0MS_S} s: {plan_0.wall_s:.2f} s "
                f"({_verdict(plan_0.wall_s <= TARGET_PLAN_0MS_S)}); client CPU "
                f"{_fmt(plan_0.median(lambda m: m.cpu_s), 's')}"
            )
        if self.validate is not None:
            v = self.validate
            out.append(
                f"- validate {self.validate_count:,} manifests <= {TARGET_VALIDATE_S} s: library "
                f"{v.library_s:.3f} s ({_verdict(v.library_s <= TARGET_VALIDATE_S)}), CLI "
                f"{v.cli_wall_s:.3f} s ({_verdict(v.cli_wall_s <= TARGET_VALIDATE_S)})"
            )
        if self.help_timings:
            help_median = statistics.median(self.help_timings)
            out.append(
                f"- `kaizenctl --help` <= {TARGET_HELP_S} s: {help_median:.3f} s "
                f"({_verdict(help_median <= TARGET_HELP_S)})"
            )
        if len(self.adaptive) >= 2:
            fixed, adaptive = self.adaptive[0], self.adaptive[1]
            failed = sum(row.last.failed for row in self.adaptive)
            out.append(
                f"- adaptive faster than --parallelism 10 with zero failed requests: "
                f"{fixed.wall_s / adaptive.wall_s:.2f}x, {failed} failed "
                f"({_verdict(adaptive.wall_s < fixed.wall_s and failed == 0)})"
            )
        if self.scaling:
            shape_n, plan_row, _apply = self.scaling[-1]
            cpu = plan_row.median(lambda m: m.cpu_s) or 0.0
            rss = plan_row.median(lambda m: m.peak_rss_mb) or 0.0
            out.append(
                f"- plan of {shape_n.resources:,} resources <= {TARGET_10K_CPU_S:g} s client CPU "
                f"and < {TARGET_10K_MEMORY_MB:.0f} MB: {cpu:.2f} s, {rss:.0f} MB "
                f"({_verdict(cpu <= TARGET_10K_CPU_S and rss < TARGET_10K_MEMORY_MB)})"
            )
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kaizenctl benchmarks against the lower bound.")
    parser.add_argument("--quick", action="store_true", help="a tenth of the set, one run each")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument("--help-runs", type=int, default=9)
    parser.add_argument("--validate-count", type=int, default=1000)
    parser.add_argument("--in-flight-limit", type=int, default=32)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1k/5k/10k plans")
    parser.add_argument(
        "--only-scaling", action="store_true", help="only the 1k/5k/10k plans (and validate)"
    )
    parser.add_argument(
        "--scales",
        type=lambda text: [int(part) for part in text.split(",")],
        default=None,
        help="thousands of resources per scaling run, e.g. 1,5,10",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "RESULTS.md", help="where to write the table"
    )
    options = parser.parse_args(argv)
    global CLIENT_BIN
    CLIENT_BIN = client_install()
    shape = QUICK if options.quick else FULL
    runs: int = options.runs or (1 if options.quick else 3)
    latency_ms: float = options.latency_ms
    parallelism: int = options.parallelism
    common = ["--parallelism", str(parallelism)]
    progress: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    report = Report(shape, latency_ms, parallelism, runs, options.in_flight_limit)

    def row(name: str, measured: list[Measurement], bounds: Bounds | None, latency: float) -> Row:
        made = Row(name, measured, bounds, latency, parallelism)
        report.rows.append(made)
        return made

    if not options.only_scaling:
        with tempfile.TemporaryDirectory() as folder:
            manifests = write_set(Path(folder) / "set", shape, prefix="bench")
            apply_args = ["apply", "--auto-approve", *common, str(manifests)]
            plan_args = ["plan", "--detailed-exitcode", *common, str(manifests)]
            progress(f"set of {shape.resources} manifests written; measuring the CLI")
            applies, plans, plans_0 = [], [], []
            for _ in range(runs):
                with server_process(latency_ms=latency_ms) as server:
                    applies.append(measure_cli("apply (CLI)", server, apply_args))
                    plans.append(measure_cli("plan (CLI)", server, plan_args))
                    server.set_faults(latency_ms=0)
                    plans_0.append(measure_cli("plan at 0 ms (CLI)", server, plan_args))
                    report.phases.append(measure_phases(server, manifests))
            row("apply from empty (CLI)", applies, apply_bounds(shape), latency_ms)
            row("plan, no changes (CLI)", plans, plan_bounds(shape), latency_ms)
            row("plan, no changes, 0 ms latency (CLI)", plans_0, None, 0.0)

            progress("measuring the library (no interpreter start-up)")
            lib_applies, lib_plans = [], []
            for _ in range(runs):
                with server_process(latency_ms=latency_ms) as server:
                    lib_applies.append(
                        measure_library("apply", server, manifests, parallelism, apply=True)
                    )
                    lib_plans.append(
                        measure_library("plan", server, manifests, parallelism, apply=False)
                    )
            row("apply from empty (library)", lib_applies, apply_bounds(shape), latency_ms)
            row("plan, no changes (library)", lib_plans, plan_bounds(shape), latency_ms)

            progress(f"measuring adaptive concurrency (in-flight limit {options.in_flight_limit})")
            knobs = {
                "latency_ms": ADAPTIVE_LATENCY_MS,
                "max_in_flight": options.in_flight_limit,
                "retry_after_s": 1,
            }
            variants = [
                ("apply, --parallelism 10 (fixed cap)", ["--parallelism", "10"]),
                ("apply, adaptive (default: 10 rising to at most 64)", []),
                ("apply, adaptive capped by --parallelism 24", ["--parallelism", "24"]),
            ]
            for name, flags in variants:
                measured = []
                for _ in range(runs):
                    with server_process(**knobs) as server:
                        measured.append(
                            measure_cli(
                                name, server, ["apply", "--auto-approve", *flags, str(manifests)]
                            )
                        )
                report.adaptive.append(
                    Row(name, measured, apply_bounds(shape), ADAPTIVE_LATENCY_MS, parallelism)
                )

    if not (options.quick or options.no_scaling):
        for thousands in options.scales or SCALES:
            big = scaled(thousands)
            progress(f"scaling: {big.resources:,} resources")
            with tempfile.TemporaryDirectory() as folder:
                big_set = write_set(Path(folder) / "set", big, prefix="scale")
                with server_process() as server:
                    seeded = measure_cli("seed", server, ["apply", "--auto-approve", str(big_set)])
                    plans = [
                        measure_cli("plan", server, ["plan", "--detailed-exitcode", str(big_set)])
                        for _ in range(runs)
                    ]
            report.scaling.append(
                (
                    big,
                    Row("plan", plans, plan_bounds(big)),
                    Row("apply", [seeded], apply_bounds(big)),
                )
            )

    progress("measuring validate and --help")
    report.validate = measure_validate(runs, options.validate_count)
    report.validate_count = options.validate_count
    report.help_timings = measure_help(options.help_runs)
    table = report.render()
    print(table)
    options.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
