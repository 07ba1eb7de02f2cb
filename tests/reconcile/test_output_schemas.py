"""The JSON outputs match their published schemas (kaizenctl/schemas/output/*.v1.json)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from kaizenctl.api.service import KaizenApi
from kaizenctl.reconcile import PlanOptions
from kaizenctl.render import render_apply, render_plan
from tests.paths import SCHEMAS as ROOT_SCHEMAS
from tests.reconcile.harness import Kaizen

SCHEMAS = ROOT_SCHEMAS / "output"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_plan_and_apply_json_match_their_schemas(kaizen: Kaizen) -> None:
    plan_schema = _validator("plan.v1.json")
    result_schema = _validator("apply-result.v1.json")

    plan, result = kaizen.apply()
    plan_schema.validate(json.loads(render_plan(plan, "json")))
    result_schema.validate(json.loads(render_apply(result, "json")))

    # A plan with drift, a failure-free prune and unmanaged resources exercises the rest.
    async def drift(api: KaizenApi) -> None:
        agent = next(a for a in await api.agents.list_all() if a.name == "triage")
        await api.agents.update(agent.id, {"temperature": 1.5})
        await api.policies.create(
            {"name": "by-hand", "effect": "deny", "resource_type": "agent", "actions": ["x"]}
        )

    kaizen.with_api(drift)
    drifted = json.loads(render_plan(kaizen.plan(), "json"))
    plan_schema.validate(drifted)
    assert drifted["drift"]["drifted"] is True
    assert drifted["unmanaged"] == [
        {
            "kind": "Policy",
            "name": "by-hand",
            "id": drifted["unmanaged"][0]["id"],
            "owners": [],
            "held_by": [],
        }
    ]
    assert drifted["set"] == "default"
    pruned = kaizen.plan(prune_unmanaged=True)
    assert pruned.counts() == {"delete": 1, "update": 1}
    plan_schema.validate(json.loads(render_plan(pruned, "json")))
    _, pruned_result = kaizen.apply(PlanOptions(prune_unmanaged=True))
    document = json.loads(render_apply(pruned_result, "json"))
    result_schema.validate(document)
    assert document["ok"] is True
    assert document["interrupted"] is False


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("plan.v1.json", {"format_version": 2}),
        ("plan.v1.json", {"actions": [{"id": "x", "verb": "explode"}]}),
        ("apply-result.v1.json", {"interrupted": []}),
    ],
)
def test_the_schemas_reject_what_they_do_not_describe(name: str, broken: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validator(name).validate(broken)
