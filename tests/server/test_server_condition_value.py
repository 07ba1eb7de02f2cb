"""A policy condition's ``value`` is required, as every other required key is (issue 14, item 19).

It may be null for ``eq`` and ``ne`` (compare with null), but it must be written.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.conftest import POLICY


def _locations(response: httpx.Response) -> list[list[Any]]:
    return [item["loc"] for item in response.json()["detail"]]


@pytest.mark.parametrize("operator", ["eq", "ne", "gt", "contains"])
def test_item19_a_condition_without_value_is_refused_naming_the_field(
    api: httpx.Client, operator: str
) -> None:
    body = {**POLICY, "conditions": [{"attribute": "env", "operator": operator}]}

    response = api.post("/policies", json=body)

    assert response.status_code == 422, response.text
    assert ["body", "conditions", 0, "value"] in _locations(response)
    assert api.get("/policies").json()["total"] == 0


def test_item19_a_patch_with_a_condition_without_value_is_refused(api: httpx.Client) -> None:
    created = api.post("/policies", json=POLICY).json()

    response = api.patch(
        f"/policies/{created['id']}",
        json={"conditions": [{"attribute": "env", "operator": "eq"}]},
    )

    assert response.status_code == 422, response.text
    assert ["body", "conditions", 0, "value"] in _locations(response)
    assert api.get(f"/policies/{created['id']}").json()["conditions"] == []


@pytest.mark.parametrize("operator", ["eq", "ne"])
def test_item19_an_explicit_null_value_is_fine_for_eq_and_ne(
    api: httpx.Client, operator: str
) -> None:
    body = {**POLICY, "conditions": [{"attribute": "env", "operator": operator, "value": None}]}

    response = api.post("/policies", json=body)

    assert response.status_code == 201, response.text
    assert response.json()["conditions"] == [
        {"attribute": "env", "operator": operator, "value": None}
    ]
