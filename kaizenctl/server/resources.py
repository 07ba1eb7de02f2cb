"""The named resources of the reference server, one declaration each.

Agents, pipelines and policies are served by one generic router
(``kaizenctl.server.crud.add_named_routes``); what differs between them — the
columns stored as JSON text or integers, the list filters, what a delete must refuse
or take with it — is declared here.
"""

import json
import sqlite3
from typing import Literal

from kaizenctl.api.models import Effect, PipelineStatus, Provider
from kaizenctl.server import schemas
from kaizenctl.server.crud import E404, NamedResource, conflict, dumps
from kaizenctl.server.lifecycle import LIVE_STATUSES, advance


def _agent_filters(
    status: Literal["active", "inactive", "draft"] | None = None,
    provider: Provider | None = None,
) -> dict[str, object]:
    filters: dict[str, object] = {"provider": provider}
    if status == "draft":
        # Accepted for the seed's sake; no agent is ever a draft.
        filters["1"] = 0
    elif status is not None:
        filters["is_active"] = 1 if status == "active" else 0
    return filters


def _agent_in_use(conn: sqlite3.Connection, agent_id: str, now: float) -> None:
    used = conn.execute(
        "SELECT p.name FROM nodes n JOIN pipelines p ON p.id = n.pipeline_id "
        "WHERE n.agent_id = ? LIMIT 1",
        (agent_id,),
    ).fetchone()
    if used is not None:
        raise conflict(f"agent is used by a node of pipeline {used['name']!r}")


def _pipeline_filters(status: PipelineStatus | None = None) -> dict[str, object]:
    return {"status": status}


def _pipeline_deployed(conn: sqlite3.Connection, pipeline_id: str, now: float) -> None:
    advance(conn, now)
    live = conn.execute(
        "SELECT count(*) FROM deployments WHERE pipeline_id = ? AND status IN (?, ?, ?)",
        (pipeline_id, *LIVE_STATUSES),
    ).fetchone()[0]
    if live:
        raise conflict("pipeline has a pending, deploying or active deployment")


def _policy_filters(
    effect: Effect | None = None, resource_type: str | None = None
) -> dict[str, object]:
    return {"effect": effect, "resource_type": resource_type}


AGENTS = NamedResource(
    "Agent",
    "agents",
    (schemas.AgentOut, schemas.AgentCreate, schemas.AgentPatch),
    stored={"tools": (dumps, json.loads), "is_active": (int, bool)},
    filters=_agent_filters,
    refuse_delete=_agent_in_use,
    delete_with=(("agent_versions", "agent_id"),),
)

PIPELINES = NamedResource(
    "Pipeline",
    "pipelines",
    (schemas.PipelineOut, schemas.PipelineCreate, schemas.PipelinePatch),
    stored={"config": (dumps, json.loads)},
    filters=_pipeline_filters,
    versioned=True,
    refuse_delete=_pipeline_deployed,
    delete_with=(("nodes", "pipeline_id"), ("connections", "pipeline_id")),
)

POLICIES = NamedResource(
    "Policy",
    "policies",
    (schemas.PolicyOut, schemas.PolicyCreate, schemas.PolicyPatch),
    stored={"actions": (dumps, json.loads), "conditions": (dumps, json.loads)},
    filters=_policy_filters,
    delete_responses=E404,
)

NAMED_RESOURCES = (AGENTS, PIPELINES, POLICIES)
