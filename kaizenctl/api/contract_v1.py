"""The dialect of CONTRACT.md (``/api/v1``): every path, query and body shape lives here.

It implements ``kaizenctl.api.service.KaizenApi`` over an ``ApiSession``; what
any dialect shares (paging, named-resource CRUD, the create-at-most-once
look-ups) is in ``kaizenctl.api.crud``. A second API dialect is a sibling
module; nothing above this layer sees a URL.

Lists ask for ``page_size=100`` (the contract's maximum) and follow the
answer's ``total_pages``.

Non-idempotent requests whose answer was lost are resolved by looking, never
by re-posting blindly (the rules are in ``kaizenctl.api.crud``). What this
dialect adds: the deployments of a (pipeline, environment) are known before a
deploy, promote or rollback from the listing ``plan`` makes (every deployment),
else by listing the pair first. A deployment someone else made after that
listing, with the very version we asked for, would be taken for ours; it is the
state we asked for either way. The expected ``pipeline_version`` is the
pipeline's current version for a deploy, the source's for a promote; a
rollback's is the replaced deployment's, which a client cannot reliably tell
from the list, so any new deployment of the pair counts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from kaizenctl.api.capabilities import CONTRACT_CAPABILITIES, Capabilities
from kaizenctl.api.crud import (
    DeploymentLedger,
    DialectApi,
    NamedResourceService,
    PageNumberLister,
    create_deployment_at_most_once,
    create_numbered_at_most_once,
    parse_list,
    parse_model,
    path_segment,
)
from kaizenctl.api.errors import (
    ApiError,
    AuthenticationError,
    DeploymentTimeoutError,
    OutcomeUnknownError,
    ResponseFormatError,
)
from kaizenctl.api.models import (
    SETTLED_DEPLOYMENT_STATUSES,
    Agent,
    AgentVersion,
    AuthTokens,
    Deployment,
    DeploymentLog,
    Graph,
    Pipeline,
    PipelineConnection,
    PipelineNode,
    Policy,
    User,
)
from kaizenctl.api.records import PipelineRecords
from kaizenctl.api.retry import create_at_most_once
from kaizenctl.api.session import ApiSession
from kaizenctl.api.settings import CREDENTIALS_HINT
from kaizenctl.redact import register_secret

API_PREFIX = "/api/v1"
PAGE_SIZE = 100  # CONTRACT: the maximum; a larger one answers 422

# wait_settled polls quickly at first (most deployments settle fast) then backs off.
SETTLE_POLL_START = 0.05
SETTLE_POLL_CAP = 2.0


def _lister(session: ApiSession) -> PageNumberLister:
    return PageNumberLister(session, PAGE_SIZE)


class AgentsV1(NamedResourceService[Agent]):
    kind = "Agent"
    path = "/agents"
    model = Agent

    def __init__(self, session: ApiSession) -> None:
        super().__init__(session, _lister(session))

    async def list_versions(self, agent_id: str) -> list[AgentVersion]:
        response = await self.session.request("GET", f"{self.item_path(agent_id)}/versions")
        return parse_list(AgentVersion, self.session.decode(response), response)

    async def create_version(self, agent_id: str) -> AgentVersion:
        path = f"{self.item_path(agent_id)}/versions"

        async def send() -> AgentVersion:
            response = await self.session.request("POST", path)
            return parse_model(AgentVersion, self.session.decode(response), response)

        return await create_numbered_at_most_once(
            self.session.policy, lambda: self.list_versions(agent_id), lambda v: v.version, send
        )


class PipelinesV1(NamedResourceService[Pipeline]):
    kind = "Pipeline"
    path = "/pipelines"
    model = Pipeline

    def __init__(self, session: ApiSession) -> None:
        super().__init__(session, _lister(session))

    async def list_matching(self, search: str) -> list[Pipeline]:
        """Pipelines whose name contains ``search`` (case-insensitive, the contract's search)."""
        return await self.lister.list_all(self.path, self.model, {"search": search})

    async def get_nodes(self, pipeline_id: str) -> list[PipelineNode]:
        response = await self.session.request("GET", f"{self.item_path(pipeline_id)}/nodes")
        data = _renamed(self.session.decode(response), _NODE_FIELDS)
        return parse_list(PipelineNode, data, response)

    async def get_connections(self, pipeline_id: str) -> list[PipelineConnection]:
        response = await self.session.request("GET", f"{self.item_path(pipeline_id)}/connections")
        data = _renamed(self.session.decode(response), _EDGE_FIELDS)
        return parse_list(PipelineConnection, data, response)

    async def put_graph(self, pipeline_id: str, graph: Graph) -> None:
        # The whole graph at once; PUT is idempotent, so a lost answer is simply re-sent.
        body = {
            "nodes": [_wire(node.model_dump(mode="json"), _NODE_FIELDS) for node in graph.nodes],
            "edges": [_wire(edge.model_dump(mode="json"), _EDGE_FIELDS) for edge in graph.edges],
        }
        await self.session.request("PUT", f"{self.item_path(pipeline_id)}/nodes", json=body)


# The contract's wire names -> the service layer's (api/models.py), for graph nodes and edges.
_NODE_FIELDS = {"position_x": "x", "position_y": "y"}
_EDGE_FIELDS = {"source_node_id": "source", "target_node_id": "target"}


def _renamed(data: Any, names: dict[str, str]) -> Any:
    """A list answer with wire field names replaced (anything else is left to the parser)."""
    if not isinstance(data, list):
        return data
    return [
        {names.get(key, key): value for key, value in item.items()}
        if isinstance(item, dict)
        else item
        for item in data
    ]


def _wire(fields: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    wire_names = {ours: theirs for theirs, ours in names.items()}
    return {wire_names.get(key, key): value for key, value in fields.items()}


class PoliciesV1(NamedResourceService[Policy]):
    kind = "Policy"
    path = "/policies"
    model = Policy

    def __init__(self, session: ApiSession) -> None:
        super().__init__(session, _lister(session))


class DeploymentsV1:
    path = "/deployments"

    def __init__(self, session: ApiSession, pipelines: PipelinesV1) -> None:
        self.session = session
        self._pipelines = pipelines
        self._lister = _lister(session)
        self._ledger = DeploymentLedger()

    def _item_path(self, deployment_id: str) -> str:
        return f"{self.path}/{path_segment(deployment_id)}"

    def _parse(self, response: httpx.Response) -> Deployment:
        deployment = parse_model(Deployment, self.session.decode(response), response)
        return self._ledger.remember(deployment)

    async def _source(self, deployment_id: str) -> Deployment:
        return self._ledger.seen(deployment_id) or await self.get(deployment_id)

    async def list_all(
        self,
        *,
        pipeline_id: str | None = None,
        environment: str | None = None,
        status: str | None = None,
    ) -> list[Deployment]:
        filters = {"pipeline_id": pipeline_id, "environment": environment, "status": status}
        params = {key: value for key, value in filters.items() if value is not None}
        found = await self._lister.list_all(self.path, Deployment, params)
        self._ledger.remember_listing(
            found, pipeline_id=pipeline_id, environment=environment, status=status
        )
        return found

    async def get(self, deployment_id: str) -> Deployment:
        return self._parse(await self.session.request("GET", self._item_path(deployment_id)))

    async def deploy(self, pipeline_id: str, environment: str) -> Deployment:
        async def expected_version() -> int | None:
            return (await self._pipelines.get(pipeline_id)).version

        return await self._create_deployment(
            self.path,
            {"pipeline_id": pipeline_id, "environment": environment},
            pipeline_id,
            environment,
            expected_version,
        )

    async def promote(self, deployment_id: str, target_environment: str) -> Deployment:
        source = await self._source(deployment_id)

        async def expected_version() -> int | None:
            return source.pipeline_version

        return await self._create_deployment(
            f"{self._item_path(deployment_id)}/promote",
            {"target_environment": target_environment},
            source.pipeline_id,
            target_environment,
            expected_version,
        )

    async def rollback(self, deployment_id: str) -> Deployment:
        source = await self._source(deployment_id)

        async def expected_version() -> int | None:
            return None  # the replaced deployment's version; not knowable from the list

        return await self._create_deployment(
            f"{self._item_path(deployment_id)}/rollback",
            None,
            source.pipeline_id,
            source.environment,
            expected_version,
        )

    async def _create_deployment(
        self,
        path: str,
        body: dict[str, Any] | None,
        pipeline_id: str,
        environment: str,
        expected_version: Callable[[], Awaitable[int | None]],
    ) -> Deployment:
        async def send() -> Deployment:
            return self._parse(await self.session.request("POST", path, json=body))

        async def list_slot() -> list[Deployment]:
            return await self.list_all(pipeline_id=pipeline_id, environment=environment)

        return await create_deployment_at_most_once(
            self.session.policy,
            self._ledger,
            pipeline_id=pipeline_id,
            environment=environment,
            send=send,
            list_slot=list_slot,
            expected_version=expected_version,
            method="POST",
            shown_path=self.session.full_path(path),
        )

    async def delete(self, deployment_id: str) -> None:
        await self.session.request(
            "DELETE", self._item_path(deployment_id), missing_ok_on_retry=True
        )

    async def logs(self, deployment_id: str) -> list[DeploymentLog]:
        response = await self.session.request("GET", f"{self._item_path(deployment_id)}/logs")
        return parse_list(DeploymentLog, self.session.decode(response), response)

    async def wait_settled(self, deployment_id: str, *, timeout: float) -> Deployment:
        policy = self.session.policy
        deadline = policy.clock() + timeout
        delay = SETTLE_POLL_START
        while True:
            deployment = await self.get(deployment_id)
            if deployment.status in SETTLED_DEPLOYMENT_STATUSES:
                return deployment
            remaining = deadline - policy.clock()
            if remaining <= 0:
                raise DeploymentTimeoutError(
                    "GET",
                    self.session.full_path(self._item_path(deployment_id)),
                    deployment_id,
                    deployment.status,
                    timeout,
                )
            await policy.sleep(min(delay, remaining))
            delay = min(delay * 2, SETTLE_POLL_CAP)


class AuthV1:
    """The seed's authService: login, register, refresh, logout, current user."""

    def __init__(
        self, session: ApiSession, email: str | None = None, password: str | None = None
    ) -> None:
        self.session = session
        self._email = email
        self._password = password
        register_secret(password)

    @property
    def has_credentials(self) -> bool:
        return bool(self._email and self._password)

    def _tokens(self, response: httpx.Response, data: Any) -> AuthTokens:
        tokens = parse_model(AuthTokens, data, response)
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        return tokens

    async def _send_login(
        self, password: str, *, json: Any = None, data: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST /auth/login, a form (contract) or JSON (studio); a refusal names the settings."""
        register_secret(password)
        try:
            # A login creates nothing that matters twice, so a lost answer may be re-sent.
            return await self.session.request(
                "POST", "/auth/login", json=json, data=data, authenticated=False, idempotent=True
            )
        except AuthenticationError as exc:
            raise AuthenticationError(
                exc.method,
                exc.path,
                exc.status,
                exc.detail,
                hint="check KAIZEN_EMAIL and KAIZEN_PASSWORD",
            ) from None

    async def login(self, email: str, password: str) -> AuthTokens:
        response = await self._send_login(password, data={"username": email, "password": password})
        return self._tokens(response, self.session.decode(response))

    async def register(
        self,
        email: str,
        password: str,
        full_name: str,
        organization_name: str | None = None,
    ) -> tuple[User, AuthTokens]:
        register_secret(password)
        body: dict[str, Any] = {"email": email, "password": password, "full_name": full_name}
        if organization_name is not None:
            body["organization_name"] = organization_name

        async def send() -> tuple[User, AuthTokens]:
            response = await self.session.request(
                "POST", "/auth/register", json=body, authenticated=False
            )
            data = self.session.decode(response)
            if not isinstance(data, dict):
                raise ResponseFormatError("POST", response.request.url.path, 201, "not an object")
            return parse_model(User, data.get("user"), response), self._tokens(
                response, data.get("tokens")
            )

        async def find() -> tuple[User, AuthTokens] | None:
            # A lost register answer: if the account now logs in, it is the one just made.
            try:
                tokens = await self.login(email, password)
            except AuthenticationError:
                return None
            return await self._me_with(tokens), tokens

        return await create_at_most_once(self.session.policy, send, find)

    async def _me_with(self, tokens: AuthTokens) -> User:
        saved = (self.session.tokens.access_token, self.session.tokens.refresh_token)
        self.session.tokens.access_token = tokens.access_token
        try:
            return await self.me()
        finally:
            self.session.tokens.access_token = saved[0]

    async def refresh(self, refresh_token: str) -> AuthTokens:
        """Trade a refresh token for new tokens; the old refresh token is dead afterwards."""
        response = await self.session.request(
            "POST",
            "/auth/refresh",
            json={"refresh_token": refresh_token},
            authenticated=False,
        )
        data = self.session.decode(response)
        if isinstance(data, dict) and not data.get("refresh_token"):
            # A server that does not rotate: keep using the one we have.
            data = {**data, "refresh_token": refresh_token}
        return self._tokens(response, data)

    async def logout(self) -> None:
        body = (
            {"refresh_token": self.session.tokens.refresh_token}
            if self.session.tokens.refresh_token
            else None
        )
        await self.session.request("POST", "/auth/logout", json=body, idempotent=True)
        self.session.tokens.refresh_token = None

    async def me(self) -> User:
        response = await self.session.request("GET", "/users/me")
        return parse_model(User, self.session.decode(response), response)

    async def log_in_with_credentials(self) -> None:
        if not (self._email and self._password):
            raise AuthenticationError(
                "POST",
                self.session.full_path("/auth/login"),
                None,
                f"no credentials: {CREDENTIALS_HINT}",
            )
        tokens = await self.login(self._email, self._password)
        self.session.tokens.access_token = tokens.access_token
        self.session.tokens.refresh_token = tokens.refresh_token

    async def renew(self) -> None:
        """The session's renewer: refresh if possible, else log in, else tell the user to."""
        tokens = self.session.tokens
        refresh_failure: ApiError | None = None
        if tokens.refresh_token:
            try:
                fresh = await self.refresh(tokens.refresh_token)
            except (AuthenticationError, OutcomeUnknownError) as exc:
                # Refused, or the answer was lost: either way the refresh token is dead
                # now (rotation), so only a new login can help.
                tokens.refresh_token = None
                refresh_failure = exc
            else:
                tokens.access_token = fresh.access_token
                tokens.refresh_token = fresh.refresh_token
                return
        if self.has_credentials:
            await self.log_in_with_credentials()
            return
        if refresh_failure is not None:
            why = refresh_failure.detail or str(refresh_failure.status)
            reason = f"the access token expired and refreshing it failed ({why})"
        else:
            reason = "the access token was refused and there is no refresh token"
        raise AuthenticationError(
            "POST",
            self.session.full_path("/auth/refresh"),
            refresh_failure.status if refresh_failure else None,
            reason,
            hint=f"log in again: {CREDENTIALS_HINT}",
        )


class ContractV1Api(DialectApi):
    """``KaizenApi`` for a CONTRACT.md server."""

    capabilities: Capabilities = CONTRACT_CAPABILITIES

    def __init__(
        self,
        session: ApiSession,
        *,
        api_url: str,
        email: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(session, api_url)
        self.auth = AuthV1(session, email, password)
        self.agents = AgentsV1(session)
        self.pipelines = PipelinesV1(session)
        self.deployments = DeploymentsV1(session, self.pipelines)
        self.policies = PoliciesV1(session)
        self.records = PipelineRecords(self.pipelines)
        session.renewer = self.auth.renew

    async def current_user(self) -> User:
        return await self.auth.me()


def base_url(api_url: str) -> str:
    return f"{api_url.rstrip('/')}{API_PREFIX}"
