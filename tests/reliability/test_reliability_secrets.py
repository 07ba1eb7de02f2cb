"""Secrets never leave kaizenctl: not in plans (text, JSON, Markdown), saved plans, logs or errors.

The manifests carry ``${VAR}`` values (an API key in a system prompt and a
policy condition, a database password in a node's config, a number the server
refuses); the connection carries a password, then tokens. Every command runs
as a real process at the highest verbosity and everything it writes — stdout,
stderr, the saved plan file — is searched for every secret, including values
that only the server still holds after a rotation (the process never saw them
in its environment, so only masking by field can hide them).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kaizenctl.server.testing import RunningServer, running_server
from tests.reliability.reliability_support import CliRun, cli_env, run_cli

MANIFESTS = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: crm-agent}
spec:
  system_prompt: "Call the CRM with key ${SUPPORT_API_KEY} and never say it."
  provider: openai
  model: gpt-4o-mini
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: crm}
spec:
  pattern: sequential
  config: {webhook_token: "${SUPPORT_API_KEY}"}
  nodes:
    - id: lookup
      node_type: agent
      agent: crm-agent
      config: {dsn: "postgres://crm:${DB_PASSWORD}@db/crm"}
  edges: []
---
apiVersion: kaizen.io/v1
kind: Policy
metadata: {name: key-guard}
spec:
  effect: deny
  resource_type: agent
  actions: [execute]
  conditions:
    - {attribute: header, operator: eq, value: "${SUPPORT_API_KEY}"}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: crm-dev}
spec: {pipeline: crm, environment: development}
"""

# A value the server refuses (max_tokens above 2**31 - 1) that arrives by substitution.
REFUSED = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: too-many-tokens}
spec:
  system_prompt: p
  provider: openai
  model: m
  max_tokens: ${HUGE_MAX_TOKENS}
"""


def _secret(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


@pytest.fixture
def live() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "manifests.yaml"
    path.write_text(MANIFESTS)
    return path


def _assert_clean(run: CliRun, forbidden: list[str], *extra_texts: str) -> None:
    texts = [run.stdout, run.stderr, *extra_texts]
    for secret in forbidden:
        for text in texts:
            assert secret not in text, f"secret {secret[:6]}... leaked:\n{text}"


def _login(server: RunningServer) -> tuple[str, str]:
    response = httpx.post(
        f"{server.url}/api/v1/auth/login",
        data={"username": server.email, "password": server.password},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    return body["access_token"], body["refresh_token"]


@pytest.mark.timeout(180)
def test_plan_apply_and_rotation_never_show_a_secret(
    live: RunningServer, manifests: Path, tmp_path: Path
) -> None:
    key, db_password = _secret("sk-live"), _secret("dbpw")
    env = cli_env(live, SUPPORT_API_KEY=key, DB_PASSWORD=db_password)
    forbidden = [key, db_password, live.password]

    for output_format in ("text", "json", "markdown"):
        run = run_cli("plan", "-vv", "--format", output_format, str(manifests), env=env)
        assert run.code == 0, run.output
        assert "(sensitive)" in run.stdout
        _assert_clean(run, forbidden)

    saved = tmp_path / "plan.kzplan"
    run = run_cli("plan", "-vv", "--out", str(saved), str(manifests), env=env)
    assert run.code == 0, run.output
    _assert_clean(run, forbidden, saved.read_text(errors="replace"))

    run = run_cli("apply", "-vv", "--auto-approve", "--plan", str(saved), env=env)
    assert run.code == 0, run.output
    assert "GET /api/v1/agents" in run.stderr  # -vv really logged the traffic
    _assert_clean(run, forbidden, saved.read_text(errors="replace"))

    # Rotate both secrets: the old values now live only on the server, and a plan that
    # shows "before -> after" must mask both sides.
    new_key, new_db_password = _secret("sk-live"), _secret("dbpw")
    rotated = cli_env(live, SUPPORT_API_KEY=new_key, DB_PASSWORD=new_db_password)
    forbidden += [new_key, new_db_password]
    for output_format in ("text", "json", "markdown"):
        run = run_cli("plan", "-vv", "--format", output_format, str(manifests), env=rotated)
        assert run.code == 0, run.output
        _assert_clean(run, forbidden)
    run = run_cli("apply", "-vv", "--auto-approve", "--format", "json", str(manifests), env=rotated)
    assert run.code == 0, run.output
    assert "crm-agent" in run.stdout
    _assert_clean(run, forbidden)


@pytest.mark.timeout(60)
def test_tokens_never_appear_in_logs_or_output(live: RunningServer, manifests: Path) -> None:
    access, refresh = _login(live)
    key, db_password = _secret("sk-live"), _secret("dbpw")
    env = cli_env(None, KAIZEN_API_URL=live.url, KAIZEN_TOKEN=access)
    env |= {"KAIZEN_REFRESH_TOKEN": refresh, "SUPPORT_API_KEY": key, "DB_PASSWORD": db_password}
    run = run_cli("apply", "-vv", "--auto-approve", str(manifests), env=env)
    assert run.code == 0, run.output
    assert "POST /api/v1/agents" in run.stderr
    _assert_clean(run, [access, refresh, key, db_password, live.password])


@pytest.mark.timeout(60)
def test_error_messages_never_show_a_secret(live: RunningServer, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(MANIFESTS)
    key, db_password = _secret("sk-live"), _secret("dbpw")
    base = {"SUPPORT_API_KEY": key, "DB_PASSWORD": db_password}

    wrong_password = _secret("not-the-password")
    env = cli_env(live, KAIZEN_PASSWORD=wrong_password, **base)
    run = run_cli("plan", "-vv", str(manifests), env=env)
    assert run.code == 1
    assert "401" in run.stderr
    _assert_clean(run, [wrong_password, key, db_password, live.password])

    bad_token = _secret("eyJhbGciOi")
    env = cli_env(None, KAIZEN_API_URL=live.url, KAIZEN_TOKEN=bad_token, **base)
    run = run_cli("apply", "-vv", "--auto-approve", str(manifests), env=env)
    assert run.code == 1
    assert "log in again" in run.stderr
    _assert_clean(run, [bad_token, key, db_password])

    # The server refuses a substituted value (422); its answer may quote the input.
    refused = tmp_path / "refused.yaml"
    refused.write_text(REFUSED)
    huge = "98765432109876"
    run = run_cli(
        "apply", "-vv", "--auto-approve", str(refused), env=cli_env(live, HUGE_MAX_TOKENS=huge)
    )
    assert run.code == 1, run.output
    assert "422" in run.output
    _assert_clean(run, [huge, live.password])
