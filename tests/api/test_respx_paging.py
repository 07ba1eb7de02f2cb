"""respx for what a real server cannot do on cue: a 429 at exactly request 7 of a paged list."""

from __future__ import annotations

import asyncio

import httpx
import respx

from kaizenctl.api.connect import open_api
from kaizenctl.api.settings import ConnectionSettings

API = "https://kaizen.test/api/v1"
TOTAL = 8


def _agent(index: int) -> dict[str, object]:
    return {
        "id": f"a{index}",
        "name": f"agent-{index}",
        "system_prompt": "p",
        "provider": "openai",
        "model": "m",
    }


def test_a_429_at_request_7_is_waited_out_and_every_page_still_read() -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 7:
            return httpx.Response(429, headers={"Retry-After": "0.01"}, json={"detail": "slow"})
        page = int(request.url.params.get("page", "1"))
        # The server caps every page at one item, whatever page_size was asked for.
        return httpx.Response(
            200,
            json={
                "items": [_agent(page)] if page <= TOTAL else [],
                "total": TOTAL,
                "page": page,
                "page_size": 1,
                "total_pages": TOTAL,
            },
        )

    settings = ConnectionSettings(api_url="https://kaizen.test", token="t0ken-for-tests")

    async def run() -> list[str]:
        # using="httpx": mock at the client, whatever transport the session picked.
        with respx.mock(assert_all_called=True, using="httpx") as router:
            router.get(f"{API}/agents").mock(side_effect=answer)
            async with open_api(settings) as api:
                return [agent.name for agent in await api.agents.list_all()]

    names = asyncio.run(run())

    assert sorted(names) == [f"agent-{i}" for i in range(1, TOTAL + 1)]
    assert len(calls) == TOTAL + 1  # eight pages and the one retry
    assert calls[0].url.params["page_size"] == "100"
    pages = sorted(int(call.url.params["page"]) for call in calls)
    assert sorted(set(pages)) == list(range(1, TOTAL + 1))
    assert len(pages) - len(set(pages)) == 1  # only the refused page was asked twice
    assert all(call.headers["Authorization"] == "Bearer t0ken-for-tests" for call in calls)
