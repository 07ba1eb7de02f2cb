"""Helpers shared by the reliability suites: run the CLI, converge, and check for duplicates.

Named ``reliability_support`` (not ``support``) because pytest puts every test
folder on ``sys.path`` and module names must not collide across folders.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kaizenctl.api.connect import open_api
from kaizenctl.api.models import Deployment
from kaizenctl.api.records import is_record_name
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.errors import KaizenctlError
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.manifests.models import DeploymentSpec, Resource
from kaizenctl.ownership.inventory import DEFAULT_SET, inventory_name
from kaizenctl.reconcile import ApplyOptions, apply_async, plan_async
from kaizenctl.server.testing import RunningServer

ROOT = Path(__file__).resolve().parents[2]
KAIZENCTL = Path(sys.executable).with_name("kaizenctl")
# Every CLI run in these suites is bounded, so a hang fails the test instead of CI.
CLI_TIMEOUT_S = 120.0


def settings_for(server: RunningServer, parallelism: int = 10) -> ConnectionSettings:
    return ConnectionSettings(
        api_url=server.url,
        email=server.email,
        password=server.password,
        parallelism=parallelism,
    )


def cli_env(server: RunningServer | None, **extra: str) -> dict[str, str]:
    """The environment for a CLI run: only what it needs, nothing from the developer's shell."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if server is not None:
        env |= {
            "KAIZEN_API_URL": server.url,
            "KAIZEN_EMAIL": server.email,
            "KAIZEN_PASSWORD": server.password,
        }
    return env | extra


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    *args: str,
    env: dict[str, str],
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT_S,
) -> CliRun:
    done = subprocess.run(
        [str(KAIZENCTL), *args],
        env=env,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return CliRun(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def load(*paths: Path, environ: dict[str, str] | None = None) -> list[Resource]:
    return list(load_manifests([str(p) for p in paths], environ=environ or {}).resources)


@dataclass
class Convergence:
    """What ``converge`` did: applies run, errors met, and whether the last plan was empty."""

    applies: int = 0
    errors: list[str] | None = None
    converged: bool = False


async def _apply_until_no_changes(
    settings: ConnectionSettings, resources: list[Resource], max_applies: int
) -> Convergence:
    result = Convergence(errors=[])
    assert result.errors is not None
    for _ in range(max_applies + 1):
        try:
            async with open_api(settings) as api:
                plan, _live = await plan_async(api, resources)
                if not plan.has_changes:
                    result.converged = True
                    return result
                if result.applies == max_applies:
                    return result
                result.applies += 1
                _plan, applied = await apply_async(
                    api, resources, options=ApplyOptions(deploy_timeout=60)
                )
                result.errors.extend(f"{o.ref}: {o.message}" for o in applied.with_status("failed"))
        except KaizenctlError as error:
            # A whole run may fail under faults (a list whose retries ran out): that is
            # allowed, as long as running again converges.
            result.errors.append(f"run failed: {error}")
    return result


def converge(
    server: RunningServer, resources: list[Resource], *, max_applies: int = 5
) -> Convergence:
    """Apply until a plan shows no changes, at most ``max_applies`` times."""
    return asyncio.run(_apply_until_no_changes(settings_for(server), resources, max_applies))


@dataclass(frozen=True)
class LiveInventory:
    agents: list[str]
    pipelines: list[str]
    policies: list[str]
    pipeline_versions: dict[str, int]
    deployments: list[Deployment]
    pipeline_names_by_id: dict[str, str]
    # kaizenctl's own records (set inventories and locks), by name.
    records: list[str]


async def _inventory(settings: ConnectionSettings) -> LiveInventory:
    async with open_api(settings) as api:
        agents, pipelines, policies, deployments = await asyncio.gather(
            api.agents.list_all(),
            api.pipelines.list_all(),
            api.policies.list_all(),
            api.deployments.list_all(),
        )
        records = await api.records.list_all()
    pipelines = [p for p in pipelines if not is_record_name(p.name)]
    return LiveInventory(
        agents=[a.name for a in agents],
        pipelines=[p.name for p in pipelines],
        policies=[p.name for p in policies],
        pipeline_versions={p.name: p.version for p in pipelines},
        deployments=deployments,
        pipeline_names_by_id={p.id: p.name for p in pipelines},
        records=[r.name for r in records],
    )


def inventory(server: RunningServer) -> LiveInventory:
    """Everything live, read with faults off (the caller turns them off first)."""
    return asyncio.run(_inventory(settings_for(server)))


def duplicate_problems(live: LiveInventory, resources: list[Resource]) -> list[str]:
    """Every way live state holds more than the manifests asked for; empty when exact.

    Precisely:
    * agents, pipelines and policies: each manifest name exactly once, and nothing else;
    * deployments: for each (pipeline, environment) a manifest names, exactly one
      deployment was ever made (starting from an empty server and never changing the
      manifests, a retried deploy or promote that made a second one is a duplicate),
      and it is the one ``active``; no deployment exists for any other slot.
    """
    problems: list[str] = []
    wanted: dict[str, set[str]] = {"Agent": set(), "Pipeline": set(), "Policy": set()}
    slots: set[tuple[str, str]] = set()
    for resource in resources:
        if resource.kind == "Deployment":
            spec = resource.spec
            assert isinstance(spec, DeploymentSpec)
            slots.add((spec.target, spec.environment))
        else:
            wanted[resource.kind].add(resource.name)
    for kind, names in (
        ("Agent", live.agents),
        ("Pipeline", live.pipelines),
        ("Policy", live.policies),
    ):
        counts = Counter(names)
        problems += [f"{kind}/{n} exists {c} times" for n, c in counts.items() if c > 1]
        problems += [f"{kind}/{n} is not in the manifests" for n in counts if n not in wanted[kind]]
        problems += [f"{kind}/{n} is missing" for n in wanted[kind] if n not in counts]
    by_slot: dict[tuple[str, str], list[Deployment]] = {}
    for deployment in live.deployments:
        name = live.pipeline_names_by_id.get(deployment.pipeline_id, deployment.pipeline_id)
        by_slot.setdefault((name, deployment.environment), []).append(deployment)
    for slot, history in sorted(by_slot.items()):
        if slot not in slots:
            problems.append(f"deployment of unmanaged slot {slot}")
            continue
        if len(history) != 1:
            summary = ", ".join(f"{d.id}:{d.status}:v{d.pipeline_version}" for d in history)
            problems.append(f"slot {slot} has {len(history)} deployments ({summary})")
        active = [d for d in history if d.status == "active"]
        if len(active) != 1:
            problems.append(f"slot {slot} has {len(active)} active deployments")
    problems += [f"slot {slot} was never deployed" for slot in sorted(slots - set(by_slot))]
    # One ownership record for the set, and no lock left behind by a finished apply.
    if live.records != [inventory_name(DEFAULT_SET)]:
        problems.append(f"kaizenctl's records are {live.records}, not the default set's one")
    return problems
