"""A gateway, deployment or promotion create whose answer was lost is found, never posted twice.

Nothing of these is unique on this server, so what is ours after a lost answer is
the one new item (not listed before sending) that matches what was asked; another
client's new item beside it, or an older one that matches, is not taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from kaizenctl.api.gateways import StudioRollout
from kaizenctl.api.retry import RetryPolicy
from tests.api.api_helpers import FakeClock
from tests.studio.rollout_fake import recorded, use_rollout

T = TypeVar("T")
# Where each list is, and the key its answer holds it under (promotions: a bare list).
LISTS = {"/gateways": "gateways", "/deployments": "deployments", "/promotions": None}


class _LosingServer:
    """Holds lists; the first POST stores ``made`` (ours first) and loses its answer."""

    def __init__(self, before: dict[str, list[dict[str, Any]]]) -> None:
        self.items = before
        self.posts = 0
        self.made: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/api/v1")
        if request.method == "GET":
            items = self.items[route]
            key = LISTS[route]
            return httpx.Response(200, json={key: items} if key else items)
        assert request.method == "POST"
        self.posts += 1
        if self.posts == 1:
            self.items[route].extend(self.made)
            raise httpx.ReadTimeout("answer lost", request=request)
        # Sent again: the look-up did not find ours (what each test rules out).
        created = {**self.made[0], "id": f"made-{self.posts}"}
        self.items[route].append(created)
        return httpx.Response(200, json=created)


def _run(server: _LosingServer, use: Callable[[StudioRollout], Awaitable[T]]) -> T:
    clock = FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, random=lambda: 0.5)
    return use_rollout(httpx.MockTransport(server.handle), use, policy)


def test_a_lost_gateway_create_is_the_new_gateway_of_that_name() -> None:
    gateway = recorded("gateways-create")["response_body"]
    # An older gateway of the same name (names are not unique here) and another
    # client's new gateway of another name: neither is ours.
    server = _LosingServer({"/gateways": [{**gateway, "id": "older"}]})
    ours = {**gateway, "id": "ours"}
    server.made = [ours, {**gateway, "id": "theirs", "name": "prod-gw"}]
    fields = {key: gateway[key] for key in ("name", "api_url", "environment")}

    created = _run(server, lambda r: r.gateways.create(fields))

    assert created.id == "ours"
    assert server.posts == 1


def test_a_lost_deploy_is_the_new_deployment_of_that_agent_on_that_gateway() -> None:
    deployment = recorded("deployments-create")["response_body"]
    agent_id, gateway_id = deployment["agent_id"], deployment["gateway_id"]
    server = _LosingServer({"/deployments": [{**deployment, "id": "older"}]})
    server.made = [
        {**deployment, "id": "ours"},
        {**deployment, "id": "theirs", "gateway_id": "another-gateway"},
        {**deployment, "id": "also-theirs", "agent_id": "another-agent"},
    ]

    created = _run(server, lambda r: r.agent_deployments.deploy(agent_id, gateway_id, None))

    assert created.id == "ours"
    assert server.posts == 1


def test_a_lost_promotion_is_the_new_one_from_that_source_to_that_gateway() -> None:
    exchange = recorded("promotions-create-production-needs-approval")
    promotion, asked = exchange["response_body"], exchange["request_body"]
    server = _LosingServer({"/promotions": [{**promotion, "id": "older"}]})
    server.made = [
        {**promotion, "id": "ours"},
        {**promotion, "id": "theirs", "source_deployment_id": "another-source"},
        {**promotion, "id": "also-theirs", "target_gateway_id": "another-gateway"},
    ]

    created = _run(server, lambda r: r.promotions.create(**asked))

    assert created.id == "ours"
    assert server.posts == 1


def test_two_new_gateways_of_that_name_are_not_guessed_between() -> None:
    gateway = recorded("gateways-create")["response_body"]
    server = _LosingServer({"/gateways": []})
    server.made = [{**gateway, "id": "ours-or-theirs"}, {**gateway, "id": "theirs-or-ours"}]
    fields = {key: gateway[key] for key in ("name", "api_url", "environment")}

    created = _run(server, lambda r: r.gateways.create(fields))

    # Neither is taken for ours: the create is sent again (the rule of create_at_most_once).
    assert created.id == "made-2"
    assert server.posts == 2
