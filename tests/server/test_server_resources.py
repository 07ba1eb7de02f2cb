"""Agents, agent versions, pipelines, graphs and policies: CRUD and every 4xx rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kaizenctl.server.bodies import MAX_BODY_BYTES

Make = Callable[..., dict[str, Any]]
AGENT_BODY = {"name": "a", "system_prompt": "p", "provider": "openai", "model": "m"}


def locs(response: httpx.Response) -> list[list[str | int]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


# ---- agents ----


def test_agent_create_defaults(make_agent: Make, api: httpx.Client) -> None:
    agent = make_agent()
    assert agent["description"] is None
    assert agent["temperature"] == 0.7
    assert agent["max_tokens"] is None
    assert agent["tools"] == []
    assert agent["is_active"] is True
    me = api.get("/users/me").json()
    assert agent["organization_id"] == me["organization_id"]
    assert agent["created_by_id"] == me["id"]
    assert api.get(f"/agents/{agent['id']}").json() == agent


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("provider", "mistral"),
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("temperature", "0.5"),
        ("temperature", True),
        ("max_tokens", 1.5),
        ("max_tokens", "100"),
        ("tools", ["a", "a"]),
        ("name", ""),
        ("name", "x" * 129),
        ("name", "tab\there"),
        ("id", "mine"),
        ("organization_id", "x"),
        ("created_at", "2024-01-01T00:00:00Z"),
        ("temprature", 0.5),
    ],
)
def test_agent_create_422(api: httpx.Client, field: str, value: object) -> None:
    body = {"name": "a", "system_prompt": "p", "provider": "openai", "model": "m", field: value}
    assert locs(api.post("/agents", json=body)) == [["body", field]]


def test_agent_create_requires_fields(api: httpx.Client) -> None:
    missing = locs(api.post("/agents", json={"name": "a"}))
    assert sorted(loc[-1] for loc in missing) == ["model", "provider", "system_prompt"]


def test_agent_numbers_by_value(make_agent: Make) -> None:
    agent = make_agent(temperature=1, max_tokens=256.0, is_active=False)
    assert agent["temperature"] == 1.0
    assert agent["max_tokens"] == 256
    assert agent["is_active"] is False


def test_agent_duplicate_name_409(make_agent: Make, api: httpx.Client) -> None:
    make_agent(name="same")
    other = make_agent(name="other")
    body = {"name": "same", "system_prompt": "p", "provider": "openai", "model": "m"}
    assert api.post("/agents", json=body).status_code == 409
    assert api.patch(f"/agents/{other['id']}", json={"name": "same"}).status_code == 409
    # Names are case-sensitive.
    assert api.post("/agents", json={**body, "name": "SAME"}).status_code == 201


def test_agent_patch_only_sent_fields(make_agent: Make, api: httpx.Client) -> None:
    agent = make_agent(description="d", max_tokens=100)
    patched = api.patch(f"/agents/{agent['id']}", json={"temperature": 1.5, "is_active": False})
    assert patched.status_code == 200
    body = patched.json()
    assert body["temperature"] == 1.5
    assert body["is_active"] is False
    assert body["description"] == "d"
    assert body["max_tokens"] == 100
    cleared = api.patch(f"/agents/{agent['id']}", json={"description": None, "max_tokens": None})
    assert cleared.json()["description"] is None
    assert cleared.json()["max_tokens"] is None


def test_agent_patch_422(make_agent: Make, api: httpx.Client) -> None:
    agent_id = make_agent()["id"]
    assert locs(api.patch(f"/agents/{agent_id}", json={"name": None})) == [["body", "name"]]
    assert locs(api.patch(f"/agents/{agent_id}", json={"temperature": None})) == [
        ["body", "temperature"]
    ]
    assert locs(api.patch(f"/agents/{agent_id}", json={"id": "x"})) == [["body", "id"]]
    assert locs(api.patch(f"/agents/{agent_id}", json={"updated_at": "x"})) == [
        ["body", "updated_at"]
    ]


def test_agent_404_and_delete(make_agent: Make, api: httpx.Client) -> None:
    agent_id = make_agent()["id"]
    assert api.delete(f"/agents/{agent_id}").status_code == 204
    for response in (
        api.get(f"/agents/{agent_id}"),
        api.patch(f"/agents/{agent_id}", json={"model": "m2"}),
        api.delete(f"/agents/{agent_id}"),
        api.get(f"/agents/{agent_id}/versions"),
        api.post(f"/agents/{agent_id}/versions"),
    ):
        assert response.status_code == 404
        assert isinstance(response.json()["detail"], str)


def test_agent_versions(make_agent: Make, api: httpx.Client) -> None:
    agent = make_agent(tools=["search"])
    first = api.post(f"/agents/{agent['id']}/versions")
    assert first.status_code == 201
    assert first.json()["version"] == 1
    assert first.json()["snapshot"]["tools"] == ["search"]
    assert first.json()["agent_id"] == agent["id"]
    api.patch(f"/agents/{agent['id']}", json={"model": "gpt-5"})
    second = api.post(f"/agents/{agent['id']}/versions").json()
    assert second["version"] == 2
    assert second["snapshot"]["model"] == "gpt-5"
    listed = api.get(f"/agents/{agent['id']}/versions").json()
    assert [v["version"] for v in listed] == [2, 1]
    # Versions count per agent.
    other = make_agent(name="other")
    assert api.post(f"/agents/{other['id']}/versions").json()["version"] == 1


def test_agent_in_use_delete_409(make_agent: Make, make_pipeline: Make, api: httpx.Client) -> None:
    agent = make_agent()
    pipeline = make_pipeline()
    graph = {"nodes": [{"id": "a", "node_type": "agent", "agent_id": agent["id"]}], "edges": []}
    assert api.put(f"/pipelines/{pipeline['id']}/nodes", json=graph).status_code == 204
    assert api.delete(f"/agents/{agent['id']}").status_code == 409
    assert (
        api.put(f"/pipelines/{pipeline['id']}/nodes", json={"nodes": [], "edges": []}).status_code
        == 204
    )
    assert api.delete(f"/agents/{agent['id']}").status_code == 204


# ---- organization isolation ----


def test_other_org_sees_nothing(
    make_agent: Make, make_pipeline: Make, make_policy: Make, other_org: httpx.Client
) -> None:
    agent, pipeline, policy = make_agent(), make_pipeline(), make_policy()
    for path in (
        f"/agents/{agent['id']}",
        f"/agents/{agent['id']}/versions",
        f"/pipelines/{pipeline['id']}",
        f"/pipelines/{pipeline['id']}/nodes",
        f"/pipelines/{pipeline['id']}/connections",
        f"/policies/{policy['id']}",
    ):
        assert other_org.get(path).status_code == 404, path
    assert other_org.delete(f"/agents/{agent['id']}").status_code == 404
    assert other_org.patch(f"/pipelines/{pipeline['id']}", json={"pattern": "x"}).status_code == 404
    assert other_org.get("/agents").json()["total"] == 0
    # Same names are fine in another organization.
    body = {"name": agent["name"], "system_prompt": "p", "provider": "openai", "model": "m"}
    assert other_org.post("/agents", json=body).status_code == 201
    # Another organization's agent cannot be referenced in a graph.
    mine = other_org.post("/pipelines", json={"name": "p", "pattern": "x"}).json()
    graph = {"nodes": [{"id": "a", "node_type": "agent", "agent_id": agent["id"]}], "edges": []}
    response = other_org.put(f"/pipelines/{mine['id']}/nodes", json=graph)
    assert locs(response) == [["body", "nodes", 0, "agent_id"]]
    deploy = other_org.post(
        "/deployments", json={"pipeline_id": pipeline["id"], "environment": "development"}
    )
    assert locs(deploy) == [["body", "pipeline_id"]]


# ---- pipelines ----


def test_pipeline_create_defaults_and_version(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    assert pipeline["status"] == "draft"
    assert pipeline["config"] == {}
    assert pipeline["description"] is None
    assert pipeline["version"] == 1
    path = f"/pipelines/{pipeline['id']}"
    assert api.patch(path, json={"status": "draft", "config": {}}).json()["version"] == 1
    assert api.patch(path, json={"config": {"k": 1}}).json()["version"] == 2
    assert api.patch(path, json={"config": {"k": 1.0}}).json()["version"] == 2
    assert api.patch(path, json={"status": "active"}).json()["version"] == 3
    assert api.patch(path, json={"description": "d"}).json()["version"] == 4
    assert api.patch(path, json={"name": "renamed", "pattern": "router"}).json()["version"] == 5
    assert api.get(path).json()["name"] == "renamed"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "p"}, ["body", "pattern"]),
        ({"name": "p", "pattern": ""}, ["body", "pattern"]),
        ({"name": "p", "pattern": "x", "status": "live"}, ["body", "status"]),
        ({"name": "p", "pattern": "x", "config": []}, ["body", "config"]),
        ({"name": "p", "pattern": "x", "version": 3}, ["body", "version"]),
    ],
)
def test_pipeline_create_422(api: httpx.Client, body: dict[str, Any], loc: list[str]) -> None:
    assert locs(api.post("/pipelines", json=body)) == [loc]


def test_pipeline_names_and_404(make_pipeline: Make, api: httpx.Client) -> None:
    make_pipeline(name="one")
    two = make_pipeline(name="two")
    assert api.post("/pipelines", json={"name": "one", "pattern": "x"}).status_code == 409
    assert api.patch(f"/pipelines/{two['id']}", json={"name": "one"}).status_code == 409
    assert api.patch(f"/pipelines/{two['id']}", json={"pattern": None}).status_code == 422
    assert api.delete(f"/pipelines/{two['id']}").status_code == 204
    assert api.get(f"/pipelines/{two['id']}").status_code == 404
    assert (
        api.put(f"/pipelines/{two['id']}/nodes", json={"nodes": [], "edges": []}).status_code == 404
    )


def graph_body(agent_id: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "sup", "node_type": "supervisor", "agent_id": agent_id, "position_x": 1},
            {"id": "w.1", "node_type": "agent", "agent_id": agent_id, "config": {"k": "v"}},
            {"id": "route_2", "node_type": "router"},
        ],
        "edges": [
            {"source_node_id": "sup", "target_node_id": "w.1", "source_handle": "out"},
            {"source_node_id": "w.1", "target_node_id": "sup"},
            {"source_node_id": "route_2", "target_node_id": "route_2"},
        ],
    }


def test_put_graph_and_read_back(make_agent: Make, make_pipeline: Make, api: httpx.Client) -> None:
    agent, pipeline = make_agent(), make_pipeline()
    path = f"/pipelines/{pipeline['id']}"
    assert api.put(f"{path}/nodes", json=graph_body(agent["id"])).status_code == 204
    nodes = {n["id"]: n for n in api.get(f"{path}/nodes").json()}
    assert set(nodes) == {"sup", "w.1", "route_2"}
    assert nodes["sup"]["position_x"] == 1
    assert nodes["sup"]["pipeline_id"] == pipeline["id"]
    assert nodes["w.1"]["config"] == {"k": "v"}
    assert nodes["route_2"]["agent_id"] is None
    assert nodes["route_2"]["position_y"] == 0
    edges = api.get(f"{path}/connections").json()
    assert {(e["source_node_id"], e["target_node_id"], e["source_handle"]) for e in edges} == {
        ("sup", "w.1", "out"),
        ("w.1", "sup", None),
        ("route_2", "route_2", None),
    }
    assert all(e["id"] and e["pipeline_id"] == pipeline["id"] for e in edges)
    assert api.get(path).json()["version"] == 2


def test_graph_version_rules(make_agent: Make, make_pipeline: Make, api: httpx.Client) -> None:
    agent, pipeline = make_agent(), make_pipeline()
    path = f"/pipelines/{pipeline['id']}"
    body = graph_body(agent["id"])
    api.put(f"{path}/nodes", json=body)
    assert api.get(path).json()["version"] == 2
    # The same graph again, even read back with server fields: a no-op.
    echoed = {
        "nodes": api.get(f"{path}/nodes").json(),
        "edges": api.get(f"{path}/connections").json(),
    }
    assert api.put(f"{path}/nodes", json=echoed).status_code == 204
    assert api.get(path).json()["version"] == 2
    # Positions only: stored, no version bump.
    body["nodes"][0]["position_x"] = 500
    body["nodes"][1]["position_y"] = -3.5
    api.put(f"{path}/nodes", json=body)
    assert api.get(path).json()["version"] == 2
    stored = {n["id"]: n for n in api.get(f"{path}/nodes").json()}
    assert stored["sup"]["position_x"] == 500
    assert stored["w.1"]["position_y"] == -3.5
    # A node config change, an edge change, a node removal: each bumps.
    body["nodes"][1]["config"] = {"k": "w"}
    api.put(f"{path}/nodes", json=body)
    assert api.get(path).json()["version"] == 3
    body["edges"].pop()
    api.put(f"{path}/nodes", json=body)
    assert api.get(path).json()["version"] == 4
    body["nodes"].pop()
    api.put(f"{path}/nodes", json=body)
    assert api.get(path).json()["version"] == 5


def test_put_graph_422_changes_nothing(
    make_agent: Make, make_pipeline: Make, api: httpx.Client
) -> None:
    agent, pipeline = make_agent(), make_pipeline()
    path = f"/pipelines/{pipeline['id']}"
    api.put(f"{path}/nodes", json=graph_body(agent["id"]))
    before = (api.get(f"{path}/nodes").json(), api.get(path).json())
    bad = {
        "nodes": [
            {"id": "a", "node_type": "agent"},
            {"id": "a", "node_type": "router"},
            {"id": "b", "node_type": "supervisor", "agent_id": "nope"},
        ],
        "edges": [
            {"source_node_id": "a", "target_node_id": "zzz"},
            {"source_node_id": "a", "target_node_id": "b"},
            {"source_node_id": "a", "target_node_id": "b"},
        ],
    }
    assert sorted(map(str, locs(api.put(f"{path}/nodes", json=bad)))) == sorted(
        map(
            str,
            [
                ["body", "nodes", 0, "agent_id"],
                ["body", "nodes", 1, "id"],
                ["body", "nodes", 2, "agent_id"],
                ["body", "edges", 0, "target_node_id"],
                ["body", "edges", 2],
            ],
        )
    )
    assert (api.get(f"{path}/nodes").json(), api.get(path).json()) == before


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"nodes": []}, ["body", "edges"]),
        (
            {"nodes": [{"id": "bad id", "node_type": "router"}], "edges": []},
            ["body", "nodes", 0, "id"],
        ),
        (
            {"nodes": [{"id": "x" * 65, "node_type": "router"}], "edges": []},
            ["body", "nodes", 0, "id"],
        ),
        ({"nodes": [{"id": "", "node_type": "router"}], "edges": []}, ["body", "nodes", 0, "id"]),
        (
            {"nodes": [{"id": "a", "node_type": "llm"}], "edges": []},
            ["body", "nodes", 0, "node_type"],
        ),
        (
            {"nodes": [{"id": "a", "node_type": "router", "position_x": "1"}], "edges": []},
            ["body", "nodes", 0, "position_x"],
        ),
        (
            {"nodes": [{"id": "a", "node_type": "router", "colour": "red"}], "edges": []},
            ["body", "nodes", 0, "colour"],
        ),
        (
            {"nodes": [], "edges": [{"source_node_id": "a"}]},
            ["body", "edges", 0, "target_node_id"],
        ),
    ],
)
def test_put_graph_schema_422(
    make_pipeline: Make, api: httpx.Client, body: dict[str, Any], loc: list[Any]
) -> None:
    pipeline = make_pipeline()
    assert locs(api.put(f"/pipelines/{pipeline['id']}/nodes", json=body)) == [loc]


def test_put_graph_ignores_echoed_fields(make_pipeline: Make, api: httpx.Client) -> None:
    pipeline = make_pipeline()
    body = {
        "nodes": [{"id": "a", "node_type": "connector", "pipeline_id": "whatever"}],
        "edges": [{"id": "e1", "pipeline_id": "x", "source_node_id": "a", "target_node_id": "a"}],
    }
    assert api.put(f"/pipelines/{pipeline['id']}/nodes", json=body).status_code == 204
    assert api.get(f"/pipelines/{pipeline['id']}/nodes").json()[0]["pipeline_id"] == pipeline["id"]


# ---- policies ----


def test_policy_crud(make_policy: Make, api: httpx.Client) -> None:
    policy = make_policy(
        conditions=[
            {"attribute": "user.role", "operator": "eq", "value": None},
            {"attribute": "env", "operator": "in", "value": ["a", "b"]},
            {"attribute": "name", "operator": "regex", "value": "^prod-.*$"},
        ]
    )
    assert policy["description"] is None
    assert len(policy["conditions"]) == 3
    path = f"/policies/{policy['id']}"
    assert api.get(path).json() == policy
    patched = api.patch(path, json={"effect": "deny", "actions": ["read", "write"]}).json()
    assert patched["effect"] == "deny"
    assert sorted(patched["actions"]) == ["read", "write"]
    assert patched["conditions"] == policy["conditions"]
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    assert api.delete(path).status_code == 404


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"effect": "maybe"}, ["body", "effect"]),
        ({"actions": []}, ["body", "actions"]),
        ({"actions": ["a", "a"]}, ["body", "actions"]),
        ({"actions": "read"}, ["body", "actions"]),
        (
            {"conditions": [{"attribute": "a", "operator": "like", "value": 1}]},
            ["body", "conditions", 0, "operator"],
        ),
        (
            {"conditions": [{"attribute": "a", "operator": "regex", "value": "(unclosed"}]},
            ["body", "conditions", 0],
        ),
        (
            {"conditions": [{"attribute": "a", "operator": "in", "value": "x"}]},
            ["body", "conditions", 0],
        ),
        (
            {"conditions": [{"attribute": "a", "operator": "gt", "value": None}]},
            ["body", "conditions", 0],
        ),
        ({"organization_id": "o"}, ["body", "organization_id"]),
    ],
)
def test_policy_422(api: httpx.Client, fields: dict[str, Any], loc: list[Any]) -> None:
    body = {"name": "p", "effect": "allow", "resource_type": "agent", "actions": ["read"], **fields}
    assert locs(api.post("/policies", json=body)) == [loc]


def test_policy_names_409(make_policy: Make, api: httpx.Client) -> None:
    make_policy(name="one")
    two = make_policy(name="two")
    body = {"name": "one", "effect": "allow", "resource_type": "agent", "actions": ["read"]}
    assert api.post("/policies", json=body).status_code == 409
    assert api.patch(f"/policies/{two['id']}", json={"name": "one"}).status_code == 409
    assert api.patch(f"/policies/{two['id']}", json={"effect": None}).status_code == 422


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(
    ("path", "template"),
    [
        (
            "/agents",
            '{"name": "a", "system_prompt": "p", "provider": "openai", '
            '"model": "m", "temperature": %s}',
        ),
        ("/pipelines", '{"name": "p", "pattern": "sequential", "config": {"x": %s}}'),
    ],
    ids=["agent-temperature", "pipeline-config"],
)
def test_numbers_json_does_not_allow_answer_422_not_500(
    api: httpx.Client, path: str, template: str, number: str
) -> None:
    response = api.post(
        path, content=template % number, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body"]
    assert number.lstrip("-") in problem["msg"]
    assert api.get(path).json()["total"] == 0


def test_a_body_over_the_size_limit_answers_413_and_creates_nothing(api: httpx.Client) -> None:
    body = {**AGENT_BODY, "system_prompt": "x" * (MAX_BODY_BYTES + 1)}
    response = api.post("/agents", json=body)
    assert response.status_code == 413
    assert "larger than 2 MiB" in response.json()["detail"]

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "a", "system_prompt": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'", "provider": "openai", "model": "m"}'

    response = api.post("/agents", content=streamed(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    just_under = {**AGENT_BODY, "system_prompt": "x" * (MAX_BODY_BYTES - 200)}
    assert api.post("/agents", json=just_under).status_code == 201
    assert api.get("/agents").json()["total"] == 1
