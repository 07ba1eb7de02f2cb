"""The Gateway kind and agent deployments as manifests (before any server is involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizenctl.errors import ManifestError
from kaizenctl.kinds import KINDS
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.manifests.models import DeploymentSpec, GatewaySpec

KEY = "gw-key-0123456789"

CHAIN = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: helper}
spec: {system_prompt: "Help.", model: gpt-4o-mini, provider: openai}
---
apiVersion: kaizen.io/v1
kind: Gateway
metadata: {name: dev-gw}
spec:
  api_url: http://127.0.0.1:8100
  environment: development
  api_key: ${GW_KEY}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: helper-dev}
spec: {agent: helper, environment: development, version: latest}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: helper-staging}
spec: {agent: helper, environment: staging, promote_from: development}
"""


def test_a_gateway_and_an_agent_chain_load(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    manifests = load_manifests([str(path)], environ={"GW_KEY": KEY})
    gateway = manifests.get("Gateway", "dev-gw")
    assert gateway is not None
    assert isinstance(gateway.spec, GatewaySpec)
    assert gateway.spec.api_key == KEY
    # The key is marked sensitive, so every output masks it.
    assert gateway.sensitive_paths == frozenset({"api_key"})
    assert KEY not in repr(gateway.spec)
    staging = manifests.find("Deployment", "helper/staging")
    assert staging is not None
    assert isinstance(staging.spec, DeploymentSpec)
    assert (staging.spec.target, staging.spec.target_kind) == ("helper", "Agent")
    # api_key is write-only: it is never among the compared fields.
    assert "api_key" not in KINDS["Gateway"].fields


def test_an_unset_key_variable_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    with pytest.raises(ManifestError) as caught:
        load_manifests([str(path)], environ={})
    assert len(caught.value.problems) == 1
    assert "GW_KEY" in caught.value.problems[0]
    assert f"{path}:12:" in caught.value.problems[0]


def test_a_key_problem_never_shows_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "apiVersion: kaizen.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
        "spec: {api_url: 'not a url', environment: development, api_key: '${GW_KEY}'}\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([str(path)], environ={"GW_KEY": KEY})
    text = str(caught.value)
    assert "spec.api_url" in text
    assert KEY not in text
