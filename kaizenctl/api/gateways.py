"""Agents on gateways, over the shipped Kaizen Studio API: gateways, deployments, promotions.

The services here are what the rollout planner (``kaizenctl.reconcile.rollout``)
programs against. They speak this server's wire (``/api/v1``) over an
``ApiSession`` and parse its answers into ``kaizenctl.api.models``. The quirks they
absorb (UPSTREAM facts, checked live):

* a deploy finishes inside its POST: the answer is ``active`` or ``failed`` (with
  ``error_message``), never in between, and a failed deploy still answers 200;
* deployment logs come in no particular order: they are sorted by time here;
* ``""`` means unset (``agent_version_id``, ``stopped_at``, ``approved_by``);
* a second stop answers 400 "Cannot stop deployment in status: stopped": stopping
  is idempotent here (the deployment is read back instead);
* ``POST /promotions/{id}/approve`` itself carries a promotion out, and
  ``/execute`` ignores approval. This module has **no** way to execute a promotion
  that requires approval: ``execute`` refuses one that is not approved.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import httpx

from kaizenctl.api.errors import ApiError, BadRequestError, NotFoundError, ResponseFormatError
from kaizenctl.api.models import AgentDeployment, AgentDeploymentLog, Gateway, Promotion
from kaizenctl.api.retry import create_at_most_once
from kaizenctl.api.session import ApiSession

# Statuses of a promotion.
PENDING = "pending"
APPROVED = "approved"
COMPLETED = "completed"
REJECTED = "rejected"

T = TypeVar("T", Gateway, AgentDeployment, Promotion)


class ApprovalRequiredError(ApiError):
    """kaizenctl refused to execute a promotion that waits for approval (it never will)."""


def _unset(value: Any) -> Any:
    return None if value in ("", "None") else value


def _object(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    data = response.json() if response.content else None
    if not isinstance(data, dict):
        raise ResponseFormatError(method, path, response.status_code, "not a JSON object")
    return data


def _listed(response: httpx.Response, key: str | None, method: str, path: str) -> list[Any]:
    data = response.json() if response.content else None
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, list):
        what = f"no list under {key!r}" if key else "not a JSON list"
        raise ResponseFormatError(method, path, response.status_code, what)
    return data


def parse_gateway(data: dict[str, Any]) -> Gateway:
    return Gateway.model_validate(
        {
            **data,
            "description": _unset(data.get("description")),
            "health_check_url": _unset(data.get("health_check_url")),
        }
    )


def parse_deployment(data: dict[str, Any]) -> AgentDeployment:
    cleaned = {
        key: _unset(data.get(key))
        for key in ("agent_version_id", "registration_id", "endpoint_url", "error_message")
    }
    times = {key: data.get(key) or "" for key in ("deployed_at", "stopped_at", "created_at")}
    return AgentDeployment.model_validate({**data, **cleaned, **times})


def parse_promotion(data: dict[str, Any]) -> Promotion:
    cleaned = {
        key: _unset(data.get(key))
        for key in ("approved_by", "rejection_reason", "target_deployment_id")
    }
    # A pending promotion's create answer has no created_at (live fact).
    times = {key: data.get(key) or "" for key in ("created_at", "completed_at")}
    return Promotion.model_validate({**data, **cleaned, **times})


class GatewayService(Protocol):
    async def list_all(self) -> list[Gateway]: ...
    async def create(self, fields: dict[str, Any]) -> Gateway: ...
    async def update(self, gateway_id: str, changes: dict[str, Any]) -> Gateway: ...
    async def delete(self, gateway_id: str) -> None: ...


class AgentDeploymentService(Protocol):
    async def list_all(self) -> list[AgentDeployment]: ...
    async def get(self, deployment_id: str) -> AgentDeployment: ...
    async def deploy(
        self, agent_id: str, gateway_id: str, agent_version_id: str | None
    ) -> AgentDeployment: ...
    async def stop(self, deployment_id: str) -> AgentDeployment: ...
    async def logs(self, deployment_id: str) -> list[AgentDeploymentLog]: ...


class PromotionService(Protocol):
    async def list_all(self) -> list[Promotion]: ...
    async def get(self, promotion_id: str) -> Promotion: ...
    async def create(
        self,
        *,
        agent_id: str,
        source_deployment_id: str,
        target_gateway_id: str,
        source_environment: str,
        target_environment: str,
    ) -> Promotion: ...
    async def execute(self, promotion: Promotion) -> Promotion: ...


class RolloutServices(Protocol):
    """What a server that deploys agents onto gateways offers the rollout planner."""

    @property
    def gateways(self) -> GatewayService: ...
    @property
    def agent_deployments(self) -> AgentDeploymentService: ...
    @property
    def promotions(self) -> PromotionService: ...


def rollout_services(api: object) -> RolloutServices | None:
    """The gateway services of a connection, or None when its server has no gateways."""
    services: RolloutServices | None = getattr(api, "rollout", None)
    return services


class _StudioCollection(Generic[T]):
    """One of this server's collections (gateways, deployments, promotions).

    A list is one request (no paging: a limit is ignored) and holds every item. Nothing
    in it is unique, so a create whose answer was lost is resolved by what is new
    (``_create_once``). A subclass sets ``path``, ``list_key`` (the key the list answer
    holds the items under; None: the answer is the list) and ``_parse``.
    """

    path = ""
    list_key: str | None = None

    def __init__(self, session: ApiSession) -> None:
        self._session = session

    @abstractmethod
    def _parse(self, data: dict[str, Any]) -> T: ...

    async def list_all(self) -> list[T]:
        response = await self._session.request("GET", self.path)
        items = _listed(response, self.list_key, "GET", self.path)
        return [self._parse(item) for item in items if isinstance(item, dict)]

    async def get(self, item_id: str) -> T:
        path = f"{self.path}/{item_id}"
        response = await self._session.request("GET", path)
        return self._parse(_object(response, "GET", path))

    async def _create_once(self, body: dict[str, Any], is_result: Callable[[T], bool]) -> T:
        """POST ``body`` at most once.

        The ids listed before sending are remembered; after a lost answer, the one item
        listed that is not among them and ``is_result`` is ours. None, or several, is
        not found (and the create is sent again, ``create_at_most_once``).
        """
        known = {item.id for item in await self.list_all()}

        async def send() -> T:
            response = await self._session.request("POST", self.path, json=body)
            return self._parse(_object(response, "POST", self.path))

        async def find() -> T | None:
            new = [
                item for item in await self.list_all() if item.id not in known and is_result(item)
            ]
            return new[0] if len(new) == 1 else None

        return await create_at_most_once(self._session.policy, send, find)


class StudioGateways(_StudioCollection[Gateway]):
    path = "/gateways"
    list_key = "gateways"

    def _parse(self, data: dict[str, Any]) -> Gateway:
        return parse_gateway(data)

    async def create(self, fields: dict[str, Any]) -> Gateway:
        body = {key: value for key, value in fields.items() if value is not None}
        # Names are not unique here: a lost create is the new gateway of that name.
        return await self._create_once(body, lambda gateway: gateway.name == body.get("name"))

    async def update(self, gateway_id: str, changes: dict[str, Any]) -> Gateway:
        # Unset on this server is "", and a PUT drops nulls: send "" to clear a field.
        body = {key: ("" if value is None else value) for key, value in changes.items()}
        path = f"{self.path}/{gateway_id}"
        response = await self._session.request("PUT", path, json=body, idempotent=True)
        return parse_gateway(_object(response, "PUT", path))

    async def delete(self, gateway_id: str) -> None:
        path = f"{self.path}/{gateway_id}"
        await self._session.request("DELETE", path, missing_ok_on_retry=True)


class StudioAgentDeployments(_StudioCollection[AgentDeployment]):
    path = "/deployments"
    list_key = "deployments"

    def _parse(self, data: dict[str, Any]) -> AgentDeployment:
        return parse_deployment(data)

    async def deploy(
        self, agent_id: str, gateway_id: str, agent_version_id: str | None
    ) -> AgentDeployment:
        body: dict[str, Any] = {"agent_id": agent_id, "gateway_id": gateway_id}
        if agent_version_id:
            body["agent_version_id"] = agent_version_id
        return await self._create_once(
            body,
            lambda deployment: (
                deployment.agent_id == agent_id and deployment.gateway_id == gateway_id
            ),
        )

    async def stop(self, deployment_id: str) -> AgentDeployment:
        path = f"{self.path}/{deployment_id}/stop"
        try:
            response = await self._session.request("POST", path, idempotent=True)
        except BadRequestError:
            # "Cannot stop deployment in status: stopped": already what was asked for.
            current = await self.get(deployment_id)
            if current.status == "active":
                raise
            return current
        return parse_deployment(_object(response, "POST", path))

    async def logs(self, deployment_id: str) -> list[AgentDeploymentLog]:
        path = f"{self.path}/{deployment_id}/logs"
        response = await self._session.request("GET", path)
        items = _listed(response, "logs", "GET", path)
        logs = [AgentDeploymentLog.model_validate(item) for item in items if isinstance(item, dict)]
        # The server lists them in no particular order.
        return sorted(logs, key=lambda entry: entry.created_at)


class StudioPromotions(_StudioCollection[Promotion]):
    path = "/promotions"

    def _parse(self, data: dict[str, Any]) -> Promotion:
        return parse_promotion(data)

    async def create(
        self,
        *,
        agent_id: str,
        source_deployment_id: str,
        target_gateway_id: str,
        source_environment: str,
        target_environment: str,
    ) -> Promotion:
        body = {
            "agent_id": agent_id,
            "source_deployment_id": source_deployment_id,
            "target_gateway_id": target_gateway_id,
            "source_environment": source_environment,
            "target_environment": target_environment,
        }
        return await self._create_once(
            body,
            lambda promotion: (
                promotion.source_deployment_id == source_deployment_id
                and promotion.target_gateway_id == target_gateway_id
            ),
        )

    async def execute(self, promotion: Promotion) -> Promotion:
        """Carry out a promotion that needs no approval, or one already approved.

        The server's ``/execute`` ignores approval; this refuses, before sending
        anything, a promotion that waits for it. kaizenctl never approves.
        """
        if promotion.requires_approval and promotion.status != APPROVED:
            raise ApprovalRequiredError(
                "POST",
                f"{self.path}/{promotion.id}/execute",
                None,
                f"promotion {promotion.id} is {promotion.status} and requires approval: "
                "kaizenctl never executes it around the approvers",
            )
        path = f"{self.path}/{promotion.id}/execute"
        response = await self._session.request("POST", path, json={})
        return parse_promotion(_object(response, "POST", path))


class StudioRollout:
    """The three services over one session (a ``RolloutServices``)."""

    def __init__(self, session: ApiSession) -> None:
        self._gateways = StudioGateways(session)
        self._deployments = StudioAgentDeployments(session)
        self._promotions = StudioPromotions(session)

    @property
    def gateways(self) -> StudioGateways:
        return self._gateways

    @property
    def agent_deployments(self) -> StudioAgentDeployments:
        return self._deployments

    @property
    def promotions(self) -> StudioPromotions:
        return self._promotions


__all__ = [
    "APPROVED",
    "COMPLETED",
    "PENDING",
    "REJECTED",
    "AgentDeploymentService",
    "ApprovalRequiredError",
    "GatewayService",
    "NotFoundError",
    "PromotionService",
    "RolloutServices",
    "StudioRollout",
]
