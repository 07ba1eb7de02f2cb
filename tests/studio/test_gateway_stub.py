"""The loopback gateway stub answers what Kaizen Studio sends a gateway, and stops."""

from __future__ import annotations

import httpx
import pytest

from tests.studio.gateway_stub import gateway_stub


def test_register_then_unregister_over_http() -> None:
    with gateway_stub() as stub:
        assert stub.url.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer gw-key"}
        body = {"name": "helper", "description": "", "agent_type": "chat", "config": "Help."}
        answer = httpx.post(f"{stub.url}/api/v1/agents/register", json=body, headers=headers)
        assert answer.status_code == 201
        registration = answer.json()["id"]
        assert stub.registered == {registration: body}
        gone = httpx.delete(f"{stub.url}/api/v1/agents/{registration}", headers=headers)
        assert gone.status_code == 200
        assert stub.registered == {}
        assert httpx.get(f"{stub.url}/health").json() == {"status": "healthy"}
        assert [(r.method, r.authorization) for r in stub.requests] == [
            ("POST", "Bearer gw-key"),
            ("DELETE", "Bearer gw-key"),
            ("GET", None),
        ]
        url = stub.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
