"""Look-ups by name in the studio dialect: which ones read the record again by id, and why."""

from __future__ import annotations

import pytest

from kaizenctl.api.errors import DuplicateNameError
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.studio import StudioApi
from tests.studio.studio_fake import ORG, FakeStudio


def test_an_agent_found_by_name_is_read_by_id_for_its_tools(
    studio: FakeStudio, policy: RetryPolicy
) -> None:
    # A listed agent record carries no tools: the one found must be read whole.
    async def go(api: StudioApi) -> list[str] | None:
        await api.agents.create({"name": "helper", "model": "gpt-4o", "tools": ["search"]})
        found = await api.agents.find_by_name("helper")
        return found.tools if found else None

    assert studio.use_api(policy, go) == ["search"]


def test_a_policy_found_by_name_is_taken_from_the_list_without_a_second_read(
    studio: FakeStudio, policy: RetryPolicy
) -> None:
    fields = {
        "name": "no-deletes",
        "effect": "deny",
        "resource_type": "agent",
        "actions": ["delete"],
        "conditions": [],
    }

    async def go(api: StudioApi) -> str | None:
        await api.policies.create(fields)
        studio.requests.clear()
        found = await api.policies.find_by_name("no-deletes")
        return found.effect if found else None

    assert studio.use_api(policy, go) == "deny"
    assert studio.count("GET", "/policies") == 1  # the list; no GET /policies/{id}


def test_a_look_up_by_name_that_finds_two_refuses_to_guess(
    studio: FakeStudio, policy: RetryPolicy
) -> None:
    async def go(api: StudioApi) -> None:
        created = await api.agents.create({"name": "helper", "model": "gpt-4o"})
        twin = {**studio.agents[created.id], "id": studio.new_id()}
        studio.agents[twin["id"]] = twin
        await api.agents.find_by_name("helper")

    with pytest.raises(DuplicateNameError, match="2 Agent resources are named 'helper'"):
        studio.use_api(policy, go)


def test_two_workspaces_of_the_managed_name_are_refused(
    studio: FakeStudio, policy: RetryPolicy
) -> None:
    for _ in range(2):
        workspace_id = studio.new_id()
        studio.workspaces[workspace_id] = {"id": workspace_id, "name": "w", "organizationId": ORG}

    with pytest.raises(DuplicateNameError, match="2 workspace resources are named 'w'"):
        studio.use_api(policy, lambda api: api.scope.workspace_id())
