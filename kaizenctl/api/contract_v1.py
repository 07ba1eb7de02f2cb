"""The dialect of CONTRACT.md (``/api/v1``): every path, query and body shape lives here.

It implements ``kaizenctl.api.service.KaizenApi`` over an ``ApiSession``.
A second API dialect would be a sibling module; nothing above this layer
sees a URL.

Lists ask for ``page_size=100`` (the contract's maximum) and follow the
answer's ``total_pages``, never the page size asked for, since a server may
cap it lower.

Non-idempotent requests whose answer was lost are resolved by looking, never
by re-posting blindly (``retry.create_at_most_once``):

* create of an agent, pipeline or policy: list by name; found → that is ours;
* new agent version: the versions listed just before sending are remembered; a
  version numbered above all of them is ours;
* deploy, promote, rollback: the ids of the target (pipeline, environment)'s
  deployments are known before sending — from a listing this client already
  made (``plan`` lists every deployment), else by listing the pair first. A
  deployment someone else made after that listing, with the very version we
  asked for, would be taken for ours; it is the state we asked for either
  way. After a lost answer, a
  deployment of that pair that was *not* known before is a candidate; it must
  carry the expected ``pipeline_version`` — the pipeline's current version for
  a deploy, the source's for a promote. (A rollback's version is the replaced
  deployment's, which a client cannot reliably tell from the list, so any new
  deployment of the pair counts.) Remembering ids rather than comparing
  ``created_at`` with our own clock makes the rule immune to clock skew. If
  several candidates remain and they disagree on version, the result is
  ambiguous and reported, not guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from kaizenctl.api.errors import (
    AmbiguousResultError,
    ApiError,
    AuthenticationError,
    DeploymentTimeoutError,
    DuplicateNameError,
    OutcomeUnknownError,
    ResponseFormatError,
)
from kaizenctl.api.models import (
    SETTLED_DEPLOYMENT_STATUSES,
    Agent,
    AgentVersion,
    ApiObject,
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
from kaizenctl.api.retry import create_at_most_once
from kaizenctl.api.session import ApiSession, QueryParams
from kaizenctl.api.settings import CREDENTIALS_HINT
from kaizenctl.redact import register_secret

API_PREFIX = "/api/v1"
PAGE_SIZE = 100  # CONTRACT: the maximum; a larger one answers 422

# wait_settled polls quickly at first (most deployments settle fast) then backs off.
SETTLE_POLL_START = 0.05
SETTLE_POLL_CAP = 2.0

M = TypeVar("M", bound=ApiObject)


def _segment(value: str) -> str:
    """An id as one path segment: ids are opaque and may hold anything."""
    return quote(value, safe="")


def _parse(model: type[M], data: Any, response: httpx.Response) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ResponseFormatError(
            response.request.method,
            response.request.url.path,
            response.status_code,
            f"unexpected {model.__name__} in the answer: {_first_problem(exc)}",
        ) from None


def _parse_list(model: type[M], data: Any, response: httpx.Response) -> list[M]:
    if not isinstance(data, list):
        raise ResponseFormatError(
            response.request.method,
            response.request.url.path,
            response.status_code,
            f"expected a list of {model.__name__}",
        )
    return [_parse(model, item, response) for item in data]


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "(body)"
    return f"{field}: {error['msg']}"


class _Page(BaseModel):
    items: list[Any]
    total: int = 0
    page: int = 1
    page_size: int = 0
    total_pages: int = 0


class _Lister:
    """Reads every page of a paginated list."""

    def __init__(self, session: ApiSession) -> None:
        self.session = session

    async def _page(
        self, path: str, number: int, params: QueryParams
    ) -> tuple[_Page, httpx.Response]:
        response = await self.session.request(
            "GET", path, params={**params, "page": number, "page_size": PAGE_SIZE}
        )
        data = self.session.decode(response)
        try:
            return _Page.model_validate(data), response
        except ValidationError as exc:
            raise ResponseFormatError(
                "GET",
                self.session.full_path(path),
                response.status_code,
                f"not a paginated list: {_first_problem(exc)}",
            ) from None

    async def list_all(
        self, path: str, model: type[M], params: QueryParams | None = None
    ) -> list[M]:
        query = dict(params or {})
        first, first_response = await self._page(path, 1, query)
        pages: list[tuple[_Page, httpx.Response]] = [(first, first_response)]
        fetched = 1
        while True:
            # Each page's own total_pages counts (the list may grow while it is read);
            # no page can be empty before the last, so more pages than items is nonsense.
            wanted = max(min(page.total_pages, max(page.total, 1)) for page, _ in pages)
            if wanted <= fetched:
                break
            more = await asyncio.gather(
                *(self._page(path, number, query) for number in range(fetched + 1, wanted + 1))
            )
            pages.extend(more)
            fetched = wanted
        result: list[M] = []
        seen: set[str] = set()
        for page, response in pages:
            for raw in page.items:
                item = _parse(model, raw, response)
                key = getattr(item, "id", None)
                # Items shift between pages when the list changes mid-read; keep one of each.
                if isinstance(key, str):
                    if key in seen:
                        continue
                    seen.add(key)
                result.append(item)
        return result


class _NamedResourceService(Generic[M]):
    """CRUD over a kind identified by name (agents, pipelines, policies)."""

    kind: str = ""
    path: str = ""
    model: type[M]

    def __init__(self, session: ApiSession) -> None:
        self.session = session
        self._lister = _Lister(session)

    def _item_path(self, item_id: str) -> str:
        return f"{self.path}/{_segment(item_id)}"

    async def list_all(self) -> list[M]:
        return await self._lister.list_all(self.path, self.model)

    async def find_by_name(self, name: str) -> M | None:
        """The one resource with this exact name, None if there is none; two is an error."""
        candidates = await self._lister.list_all(self.path, self.model, {"search": name})
        matches = [item for item in candidates if getattr(item, "name", None) == name]
        if len(matches) > 1:
            raise DuplicateNameError(
                "GET",
                self.session.full_path(self.path),
                self.kind,
                name,
                [str(getattr(item, "id", "?")) for item in matches],
            )
        return matches[0] if matches else None

    async def get(self, item_id: str) -> M:
        response = await self.session.request("GET", self._item_path(item_id))
        return _parse(self.model, self.session.decode(response), response)

    async def create(self, fields: dict[str, Any]) -> M:
        name = fields.get("name")

        async def send() -> M:
            response = await self.session.request("POST", self.path, json=fields)
            return _parse(self.model, self.session.decode(response), response)

        async def find() -> M | None:
            return await self.find_by_name(name) if isinstance(name, str) else None

        return await create_at_most_once(self.session.policy, send, find)

    async def update(self, item_id: str, changes: dict[str, Any]) -> M:
        response = await self.session.request("PATCH", self._item_path(item_id), json=changes)
        return _parse(self.model, self.session.decode(response), response)

    async def delete(self, item_id: str) -> None:
        await self.session.request("DELETE", self._item_path(item_id), missing_ok_on_retry=True)


class AgentsV1(_NamedResourceService[Agent]):
    kind = "Agent"
    path = "/agents"
    model = Agent

    async def list_versions(self, agent_id: str) -> list[AgentVersion]:
        response = await self.session.request("GET", f"{self._item_path(agent_id)}/versions")
        return _parse_list(AgentVersion, self.session.decode(response), response)

    async def create_version(self, agent_id: str) -> AgentVersion:
        path = f"{self._item_path(agent_id)}/versions"
        # Remembered before sending so that a lost answer can be told apart from older versions.
        newest_before = max((v.version for v in await self.list_versions(agent_id)), default=0)

        async def send() -> AgentVersion:
            response = await self.session.request("POST", path)
            return _parse(AgentVersion, self.session.decode(response), response)

        async def find() -> AgentVersion | None:
            newer = [v for v in await self.list_versions(agent_id) if v.version > newest_before]
            return min(newer, key=lambda v: v.version) if newer else None

        return await create_at_most_once(self.session.policy, send, find)


class PipelinesV1(_NamedResourceService[Pipeline]):
    kind = "Pipeline"
    path = "/pipelines"
    model = Pipeline

    async def get_nodes(self, pipeline_id: str) -> list[PipelineNode]:
        response = await self.session.request("GET", f"{self._item_path(pipeline_id)}/nodes")
        return _parse_list(PipelineNode, self.session.decode(response), response)

    async def get_connections(self, pipeline_id: str) -> list[PipelineConnection]:
        response = await self.session.request("GET", f"{self._item_path(pipeline_id)}/connections")
        return _parse_list(PipelineConnection, self.session.decode(response), response)

    async def put_graph(self, pipeline_id: str, graph: Graph) -> None:
        # The whole graph at once; PUT is idempotent, so a lost answer is simply re-sent.
        body = {
            "nodes": [node.model_dump(mode="json") for node in graph.nodes],
            "edges": [edge.model_dump(mode="json") for edge in graph.edges],
        }
        await self.session.request("PUT", f"{self._item_path(pipeline_id)}/nodes", json=body)


class PoliciesV1(_NamedResourceService[Policy]):
    kind = "Policy"
    path = "/policies"
    model = Policy


class DeploymentsV1:
    path = "/deployments"

    def __init__(self, session: ApiSession, pipelines: PipelinesV1) -> None:
        self.session = session
        self._pipelines = pipelines
        self._lister = _Lister(session)
        # Every deployment this client has read or made. A deployment's pipeline, environment
        # and version never change, so what was seen answers "which are new?" and "what
        # version does this source run?" without asking again.
        self._seen: dict[str, Deployment] = {}
        self._all_listed = False
        self._listed_slots: set[tuple[str, str]] = set()

    def _item_path(self, deployment_id: str) -> str:
        return f"{self.path}/{_segment(deployment_id)}"

    def _remember(self, deployment: Deployment) -> Deployment:
        self._seen[deployment.id] = deployment
        return deployment

    def _known_ids(self, pipeline_id: str, environment: str) -> set[str] | None:
        """Ids of the slot's deployments, if a complete listing of the slot was seen."""
        if not self._all_listed and (pipeline_id, environment) not in self._listed_slots:
            return None
        return {
            d.id
            for d in self._seen.values()
            if d.pipeline_id == pipeline_id and d.environment == environment
        }

    async def _source(self, deployment_id: str) -> Deployment:
        return self._seen.get(deployment_id) or await self.get(deployment_id)

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
        for deployment in found:
            self._remember(deployment)
        if not params:
            self._all_listed = True
        elif pipeline_id is not None and environment is not None and status is None:
            self._listed_slots.add((pipeline_id, environment))
        return found

    async def get(self, deployment_id: str) -> Deployment:
        response = await self.session.request("GET", self._item_path(deployment_id))
        return self._remember(_parse(Deployment, self.session.decode(response), response))

    async def deploy(self, pipeline_id: str, environment: str) -> Deployment:
        async def expected_version() -> int | None:
            return (await self._pipelines.get(pipeline_id)).version

        return await self._create_deployment(
            "POST",
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
            "POST",
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
            "POST",
            f"{self._item_path(deployment_id)}/rollback",
            None,
            source.pipeline_id,
            source.environment,
            expected_version,
        )

    async def _create_deployment(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        pipeline_id: str,
        environment: str,
        expected_version: Callable[[], Awaitable[int | None]],
    ) -> Deployment:
        before = self._known_ids(pipeline_id, environment)
        if before is None:
            before = {
                d.id for d in await self.list_all(pipeline_id=pipeline_id, environment=environment)
            }

        async def send() -> Deployment:
            response = await self.session.request(method, path, json=body)
            return self._remember(_parse(Deployment, self.session.decode(response), response))

        async def find() -> Deployment | None:
            version = await expected_version()
            now = await self.list_all(pipeline_id=pipeline_id, environment=environment)
            candidates = [
                d
                for d in now
                if d.id not in before and (version is None or d.pipeline_version == version)
            ]
            found = _pick_new_deployment(candidates, method, self.session.full_path(path))
            return self._remember(found) if found is not None else None

        return await create_at_most_once(self.session.policy, send, find)

    async def delete(self, deployment_id: str) -> None:
        await self.session.request(
            "DELETE", self._item_path(deployment_id), missing_ok_on_retry=True
        )

    async def logs(self, deployment_id: str) -> list[DeploymentLog]:
        response = await self.session.request("GET", f"{self._item_path(deployment_id)}/logs")
        return _parse_list(DeploymentLog, self.session.decode(response), response)

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


def _pick_new_deployment(
    candidates: list[Deployment], method: str, shown_path: str
) -> Deployment | None:
    if not candidates:
        return None
    if len({d.pipeline_version for d in candidates}) > 1:
        raise AmbiguousResultError(
            method,
            shown_path,
            None,
            "the answer was lost and several new deployments could be the result "
            f"({', '.join(d.id for d in candidates)}); check them before applying again",
        )
    # Equivalent results (same pipeline, environment, version): the newest is the one that
    # will stay, since a newer deployment cancels an older pending one.
    return max(candidates, key=lambda d: (d.created_at, d.id))


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
        tokens = _parse(AuthTokens, data, response)
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        return tokens

    async def login(self, email: str, password: str) -> AuthTokens:
        register_secret(password)
        try:
            # A login creates nothing that matters twice, so a lost answer may be re-sent.
            response = await self.session.request(
                "POST",
                "/auth/login",
                data={"username": email, "password": password},
                authenticated=False,
                idempotent=True,
            )
        except AuthenticationError as exc:
            raise AuthenticationError(
                exc.method,
                exc.path,
                exc.status,
                exc.detail,
                hint="check KAIZEN_EMAIL and KAIZEN_PASSWORD",
            ) from None
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
            return _parse(User, data.get("user"), response), self._tokens(
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
        return _parse(User, self.session.decode(response), response)

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


class ContractV1Api:
    """``KaizenApi`` for a CONTRACT.md server."""

    def __init__(
        self,
        session: ApiSession,
        *,
        api_url: str,
        email: str | None = None,
        password: str | None = None,
    ) -> None:
        self.session = session
        self._api_url = api_url
        self._auth = AuthV1(session, email, password)
        self._agents = AgentsV1(session)
        self._pipelines = PipelinesV1(session)
        self._deployments = DeploymentsV1(session, self._pipelines)
        self._policies = PoliciesV1(session)
        session.renewer = self._auth.renew

    @property
    def agents(self) -> AgentsV1:
        return self._agents

    @property
    def pipelines(self) -> PipelinesV1:
        return self._pipelines

    @property
    def deployments(self) -> DeploymentsV1:
        return self._deployments

    @property
    def policies(self) -> PoliciesV1:
        return self._policies

    @property
    def auth(self) -> AuthV1:
        return self._auth

    @property
    def server_identity(self) -> str:
        return self._api_url

    async def current_user(self) -> User:
        return await self._auth.me()

    async def aclose(self) -> None:
        await self.session.aclose()


def base_url(api_url: str) -> str:
    return f"{api_url.rstrip('/')}{API_PREFIX}"
