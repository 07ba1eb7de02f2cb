"""What every API dialect shares: answer parsing, paging, named-resource CRUD and
the look-ups that make a create happen at most once.

A dialect module (``contract_v1``, a second one beside it) supplies paths, query
and body shapes; the rules below are the same for all of them:

* A list is read to the end and each item kept once: items shift between pages
  when the list changes mid-read.
* A create whose answer was lost is resolved by looking, never by re-posting
  blindly (``retry.create_at_most_once``):

  - a named resource (agent, pipeline, policy): list by name; found → ours;
  - a numbered child (an agent version): the numbers listed just before sending
    are remembered; the lowest above all of them is ours
    (``create_numbered_at_most_once``);
  - a deployment (deploy, promote, rollback): the ids of the target (pipeline,
    environment)'s deployments are known before sending, from a listing this
    client already made (``DeploymentLedger``), else by listing the pair first.
    After a lost answer, a deployment of that pair that was *not* known before
    is a candidate; it must carry the expected ``pipeline_version`` when one is
    known. Remembering ids rather than comparing ``created_at`` with our own
    clock makes the rule immune to clock skew. Candidates that disagree on
    version are ambiguous and reported, not guessed
    (``create_deployment_at_most_once``, ``pick_new_deployment``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from kaizenctl.api.errors import AmbiguousResultError, DuplicateNameError, ResponseFormatError
from kaizenctl.api.models import ApiObject, Deployment
from kaizenctl.api.retry import RetryPolicy, create_at_most_once
from kaizenctl.api.session import ApiSession, QueryParams

M = TypeVar("M", bound=ApiObject)
V = TypeVar("V")


def path_segment(value: str) -> str:
    """An id as one path segment: ids are opaque and may hold anything."""
    return quote(value, safe="")


def first_problem(exc: ValidationError) -> str:
    """The first validation problem as ``field: message``."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "(body)"
    return f"{field}: {error['msg']}"


def parse_model(model: type[M], data: Any, response: httpx.Response) -> M:
    """``data`` (from ``response``) as ``model``; a mismatch is a ``ResponseFormatError``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ResponseFormatError.of(
            response, f"unexpected {model.__name__} in the answer: {first_problem(exc)}"
        ) from None


def parse_list(model: type[M], data: Any, response: httpx.Response) -> list[M]:
    """A JSON array of ``model``; anything else is a ``ResponseFormatError``."""
    if not isinstance(data, list):
        raise ResponseFormatError.of(response, f"expected a list of {model.__name__}")
    return [parse_model(model, item, response) for item in data]


def keep_one_per_id(items: Iterable[M]) -> list[M]:
    """Items in order, each id once (an item without a string id is always kept)."""
    result: list[M] = []
    seen: set[str] = set()
    for item in items:
        key = getattr(item, "id", None)
        if isinstance(key, str):
            if key in seen:
                continue
            seen.add(key)
        result.append(item)
    return result


def the_one_named(
    matches: list[V], name: str, *, kind: str, shown_path: str, id_of: Callable[[V], str]
) -> V | None:
    """The one of ``matches`` (all named ``name``), None if none.

    Several are a ``DuplicateNameError``: kaizenctl identifies by name and will not guess.
    """
    if len(matches) > 1:
        raise DuplicateNameError("GET", shown_path, kind, name, [id_of(item) for item in matches])
    return matches[0] if matches else None


class Lister(Protocol):
    """Reads every item of a list endpoint, however the dialect pages it."""

    async def list_all(
        self, path: str, model: type[M], params: QueryParams | None = None
    ) -> list[M]: ...


class _NumberedPage(BaseModel):
    items: list[Any]
    total: int = 0
    page: int = 1
    page_size: int = 0
    total_pages: int = 0


class PageNumberLister:
    """Paging by ``page`` / ``page_size``, following each answer's ``total_pages``.

    It follows ``total_pages`` rather than the page size asked for, since a server
    may cap that lower.
    """

    def __init__(self, session: ApiSession, page_size: int) -> None:
        self.session = session
        self.page_size = page_size

    async def _page(
        self, path: str, number: int, params: QueryParams
    ) -> tuple[_NumberedPage, httpx.Response]:
        response = await self.session.request(
            "GET", path, params={**params, "page": number, "page_size": self.page_size}
        )
        data = self.session.decode(response)
        try:
            return _NumberedPage.model_validate(data), response
        except ValidationError as exc:
            raise ResponseFormatError(
                "GET",
                self.session.full_path(path),
                response.status_code,
                f"not a paginated list: {first_problem(exc)}",
            ) from None

    async def list_all(
        self, path: str, model: type[M], params: QueryParams | None = None
    ) -> list[M]:
        query = dict(params or {})
        first, first_response = await self._page(path, 1, query)
        pages: list[tuple[_NumberedPage, httpx.Response]] = [(first, first_response)]
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
        return keep_one_per_id(
            parse_model(model, raw, response) for page, response in pages for raw in page.items
        )


class DialectApi:
    """What a dialect's ``KaizenApi`` holds whatever its services: the session (closed by
    ``aclose``) and the server's identity (the API URL as given, which holds no secret)."""

    def __init__(self, session: ApiSession, api_url: str) -> None:
        self.session = session
        self.server_identity = api_url

    async def aclose(self) -> None:
        await self.session.aclose()


class NamedResourceService(Generic[M]):
    """CRUD over a kind identified by name (agents, pipelines, policies).

    A subclass sets ``kind`` (for messages), ``path`` and ``model``; a dialect whose
    wire differs overrides ``search_params``, ``create_body`` or ``update_body``.
    """

    kind: str = ""
    path: str = ""
    model: type[M]

    def __init__(self, session: ApiSession, lister: Lister) -> None:
        self.session = session
        self.lister = lister

    def item_path(self, item_id: str) -> str:
        return f"{self.path}/{path_segment(item_id)}"

    def search_params(self, name: str) -> QueryParams:
        """The list query that narrows the list to ``name`` (exact matching happens here)."""
        return {"search": name}

    def create_body(self, fields: dict[str, Any]) -> Any:
        return fields

    def update_body(self, changes: dict[str, Any]) -> Any:
        return changes

    def parse(self, response: httpx.Response) -> M:
        return parse_model(self.model, self.session.decode(response), response)

    async def list_all(self) -> list[M]:
        return await self.lister.list_all(self.path, self.model)

    async def find_by_name(self, name: str) -> M | None:
        """The one resource with this exact name, None if there is none; two is an error."""
        candidates = await self.lister.list_all(self.path, self.model, self.search_params(name))
        return the_one_named(
            [item for item in candidates if getattr(item, "name", None) == name],
            name,
            kind=self.kind,
            shown_path=self.session.full_path(self.path),
            id_of=lambda item: str(getattr(item, "id", "?")),
        )

    async def get(self, item_id: str) -> M:
        return self.parse(await self.session.request("GET", self.item_path(item_id)))

    async def create(self, fields: dict[str, Any]) -> M:
        name = fields.get("name")
        body = self.create_body(fields)

        async def send() -> M:
            return self.parse(await self.session.request("POST", self.path, json=body))

        async def find() -> M | None:
            return await self.find_by_name(name) if isinstance(name, str) else None

        return await create_at_most_once(self.session.policy, send, find)

    async def update(self, item_id: str, changes: dict[str, Any]) -> M:
        body = self.update_body(changes)
        return self.parse(await self.session.request("PATCH", self.item_path(item_id), json=body))

    async def delete(self, item_id: str) -> None:
        await self.session.request("DELETE", self.item_path(item_id), missing_ok_on_retry=True)


async def create_numbered_at_most_once(
    policy: RetryPolicy,
    existing: Callable[[], Awaitable[list[V]]],
    number: Callable[[V], int],
    send: Callable[[], Awaitable[V]],
) -> V:
    """Create a numbered child (an agent version) at most once.

    The highest number is remembered before sending so that a lost answer can be
    told apart from older children: the lowest one above it is ours.
    """
    newest_before = max((number(item) for item in await existing()), default=0)

    async def find() -> V | None:
        newer = [item for item in await existing() if number(item) > newest_before]
        return min(newer, key=number) if newer else None

    return await create_at_most_once(policy, send, find)


class DeploymentLedger:
    """Every deployment this client has read or made.

    A deployment's pipeline, environment and version never change, so what was
    seen answers "which are new?" and "what version does this source run?"
    without asking again.
    """

    def __init__(self) -> None:
        self._seen: dict[str, Deployment] = {}
        self._all_listed = False
        self._listed_slots: set[tuple[str, str]] = set()

    def remember(self, deployment: Deployment) -> Deployment:
        self._seen[deployment.id] = deployment
        return deployment

    def seen(self, deployment_id: str) -> Deployment | None:
        return self._seen.get(deployment_id)

    def remember_listing(
        self,
        found: Iterable[Deployment],
        *,
        pipeline_id: str | None,
        environment: str | None,
        status: str | None,
    ) -> None:
        """Remember a listing made with these filters (None = not filtered)."""
        for deployment in found:
            self.remember(deployment)
        if pipeline_id is None and environment is None and status is None:
            self._all_listed = True
        elif pipeline_id is not None and environment is not None and status is None:
            self._listed_slots.add((pipeline_id, environment))

    def known_ids(self, pipeline_id: str, environment: str) -> set[str] | None:
        """Ids of the slot's deployments, if a complete listing of the slot was seen."""
        if not self._all_listed and (pipeline_id, environment) not in self._listed_slots:
            return None
        return {
            d.id
            for d in self._seen.values()
            if d.pipeline_id == pipeline_id and d.environment == environment
        }


async def create_deployment_at_most_once(
    policy: RetryPolicy,
    ledger: DeploymentLedger,
    *,
    pipeline_id: str,
    environment: str,
    send: Callable[[], Awaitable[Deployment]],
    list_slot: Callable[[], Awaitable[list[Deployment]]],
    expected_version: Callable[[], Awaitable[int | None]],
    method: str,
    shown_path: str,
) -> Deployment:
    """Deploy, promote or roll back into (pipeline, environment) at most once.

    ``list_slot`` lists the pair's deployments (and remembers them in ``ledger``);
    ``expected_version`` is the ``pipeline_version`` the new deployment must carry,
    None when it cannot be known. ``method`` and ``shown_path`` name the request in
    an ambiguity error.
    """
    before = ledger.known_ids(pipeline_id, environment)
    if before is None:
        before = {d.id for d in await list_slot()}

    async def find() -> Deployment | None:
        version = await expected_version()
        candidates = [
            d
            for d in await list_slot()
            if d.id not in before and (version is None or d.pipeline_version == version)
        ]
        found = pick_new_deployment(candidates, method, shown_path)
        return ledger.remember(found) if found is not None else None

    async def send_and_remember() -> Deployment:
        return ledger.remember(await send())

    return await create_at_most_once(policy, send_and_remember, find)


def pick_new_deployment(
    candidates: list[Deployment], method: str, shown_path: str
) -> Deployment | None:
    """The deployment a lost answer made, from the new ones of its slot; None if none."""
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
