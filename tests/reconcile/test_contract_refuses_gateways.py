"""A CONTRACT.md server deploys pipelines: gateways and agent deployments are refused at plan."""

from __future__ import annotations

import os

import pytest

from kaizenctl.errors import PlanError
from tests.reconcile.harness import Kaizen

GATEWAY = """\
apiVersion: kaizen.io/v1
kind: Gateway
metadata: {name: dev-gw}
spec:
  api_url: http://127.0.0.1:8100
  environment: development
  api_key: ${KAIZENCTL_TEST_GATEWAY_KEY}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: triage-dev}
spec: {agent: triage, environment: development}
"""


def test_gateways_and_agent_deployments_are_refused_at_file_and_line_with_no_write(
    kaizen: Kaizen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZENCTL_TEST_GATEWAY_KEY", "gw-secret-key-1234")
    kaizen.write("gateways.yaml", GATEWAY)
    kaizen.server.clear_request_log()
    with pytest.raises(PlanError) as caught:
        kaizen.apply()
    message = str(caught.value)
    where = os.path.join(str(kaizen.folder), "gateways.yaml")
    assert f"{where}:1:1: Gateway/dev-gw: this server has no gateways" in message
    assert f"{where}:12:15: Deployment/triage-dev" in message
    assert "Deployment/triage-dev: spec.agent: this server deploys pipelines" in message
    assert "gw-secret-key-1234" not in message
    writes = [e for e in kaizen.server.request_log() if e.method not in ("GET", "HEAD")]
    assert [e.path for e in writes] == ["/api/v1/auth/login"]
