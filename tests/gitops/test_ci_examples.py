"""The CI examples stay runnable: valid YAML, the jobs they promise, only flags kaizenctl has."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"
INVOCATION = re.compile(r"\bkaizenctl\s+(validate|plan|show|apply|export)\b([^\n|>&;]*)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _options(command_name: str) -> set[str]:
    command: click.Command = importlib.import_module(f"kaizenctl.commands.{command_name}").command
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


@pytest.mark.parametrize("name", ["github-actions.yml", "drift-cronjob.yaml"])
def test_ci_example_calls_only_real_commands_and_flags(name: str) -> None:
    document = yaml.safe_load((CI / name).read_text())
    calls = [m for text in _strings(document) for m in INVOCATION.finditer(text)]
    assert calls, f"{name} runs no kaizenctl command"
    for call in calls:
        command, rest = call.group(1), call.group(2)
        unknown = set(re.findall(r"--[a-z][a-z-]*", rest)) - _options(command)
        assert not unknown, f"{name}: `kaizenctl {command}` has no {sorted(unknown)}"


def test_workflow_plans_on_pull_requests_applies_the_saved_plan_and_checks_drift() -> None:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    # PyYAML reads the key `on` as True (YAML 1.1).
    triggers = workflow[True]
    assert "pull_request" in triggers
    assert "schedule" in triggers
    runs = {job: " ".join(_strings(spec)) for job, spec in workflow["jobs"].items()}
    assert "--out plan.json" in runs["plan"]
    # The PR comment is rendered from the saved plan that the merge applies.
    assert "show plan.json --format markdown" in runs["plan"]
    assert "gh pr comment" in runs["plan"]
    assert "apply --plan plan.json" in runs["apply"]
    assert "--detailed-exitcode --format json" in runs["drift"]


def test_workflow_applies_one_at_a_time_per_set_and_never_cancels_an_apply() -> None:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    jobs = workflow["jobs"]
    assert jobs["apply"]["concurrency"]["cancel-in-progress"] is False
    assert jobs["apply"]["concurrency"]["group"].startswith("kaizen-apply-")
    # A newer push replaces a pull request's plan; plans take no lock.
    assert jobs["plan"]["concurrency"]["cancel-in-progress"] is True
    assert workflow["env"]["KAIZEN_SET"]
    assert "--lock-timeout" in " ".join(_strings(jobs["apply"]))


def test_cronjob_takes_credentials_from_a_secret() -> None:
    cronjob = yaml.safe_load((CI / "drift-cronjob.yaml").read_text())
    assert cronjob["kind"] == "CronJob"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "kaizen-credentials"}}]
    assert "--detailed-exitcode --format json" in " ".join(container["args"])
