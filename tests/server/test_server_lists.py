"""Lists: pagination, search, sort, filters and their 422s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kaizenctl.server.testing import RunningServer

Make = Callable[..., dict[str, Any]]


def test_pagination(make_agent: Make, api: httpx.Client) -> None:
    ids = [make_agent(name=f"agent-{i:02}")["id"] for i in range(7)]
    first = api.get("/agents", params={"page_size": 3}).json()
    assert first["total"] == 7
    assert first["page"] == 1
    assert first["page_size"] == 3
    assert first["total_pages"] == 3
    seen = []
    for page in (1, 2, 3):
        seen += [
            a["id"]
            for a in api.get("/agents", params={"page": page, "page_size": 3}).json()["items"]
        ]
    assert seen == ids  # default order: created_at, then id; stable across pages
    past = api.get("/agents", params={"page": 9, "page_size": 3}).json()
    assert past["items"] == []
    assert past["total"] == 7
    huge = api.get("/agents", params={"page": 10**18}).json()
    assert huge["items"] == []
    desc = api.get("/agents", params={"sort_order": "desc"}).json()["items"]
    assert [a["id"] for a in desc] == ids[::-1]


def test_empty_list(api: httpx.Client) -> None:
    body = api.get("/policies").json()
    assert body == {"items": [], "total": 0, "page": 1, "page_size": 20, "total_pages": 0}


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page": -1},
        {"page": "x"},
        {"page": "1.5"},
        {"page_size": 0},
        {"page_size": 101},
        {"sort_by": "model"},
        {"sort_order": "up"},
        {"status": "deleted"},
        {"provider": "mistral"},
    ],
)
def test_agent_list_422(api: httpx.Client, params: dict[str, Any]) -> None:
    response = api.get("/agents", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_search_sort_filters(make_agent: Make, api: httpx.Client) -> None:
    make_agent(name="Bravo Writer", provider="anthropic")
    make_agent(name="alpha reader", is_active=False)
    make_agent(name="Charlie WRITER", provider="ollama")

    def names(params: dict[str, str]) -> list[str]:
        return [a["name"] for a in api.get("/agents", params=params).json()["items"]]

    assert names({"search": "writer", "sort_by": "name"}) == ["Bravo Writer", "Charlie WRITER"]
    assert names({"sort_by": "name", "sort_order": "desc"}) == [
        "alpha reader",
        "Charlie WRITER",
        "Bravo Writer",
    ]
    assert names({"status": "inactive"}) == ["alpha reader"]
    assert len(names({"status": "active"})) == 2
    assert names({"status": "draft"}) == []
    assert names({"provider": "ollama"}) == ["Charlie WRITER"]
    assert api.get("/agents", params={"search": "WRIT"}).json()["total"] == 2


def test_pipeline_and_policy_lists(
    make_pipeline: Make, make_policy: Make, api: httpx.Client
) -> None:
    make_pipeline(name="p-draft")
    make_pipeline(name="p-active", status="active")
    assert [
        p["name"] for p in api.get("/pipelines", params={"status": "active"}).json()["items"]
    ] == ["p-active"]
    assert api.get("/pipelines", params={"status": "gone"}).status_code == 422
    assert api.get("/pipelines", params={"search": "DRAFT"}).json()["total"] == 1
    make_policy(name="deny-all", effect="deny")
    make_policy(name="allow-read")
    assert [p["name"] for p in api.get("/policies", params={"effect": "deny"}).json()["items"]] == [
        "deny-all"
    ]
    assert api.get("/policies", params={"sort_by": "updated_at"}).status_code == 200
    assert api.get("/policies", params={"sort_by": "effect"}).status_code == 422


def test_page_size_cap(server: RunningServer, make_agent: Make, api: httpx.Client) -> None:
    for i in range(5):
        make_agent(name=f"a{i}")
    server.set_faults(page_size_cap=2)
    body = api.get("/agents", params={"page_size": 50}).json()
    assert body["page_size"] == 2
    assert len(body["items"]) == 2
    assert body["total_pages"] == 3
    assert body["total"] == 5
