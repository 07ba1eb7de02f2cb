"""Live state reads only the kinds the dialect's capability table says its server serves."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from kaizenctl.api.capabilities import Capabilities
from kaizenctl.api.service import KaizenApi
from kaizenctl.reconcile.live import LiveSnapshot, fetch_live
from tests.reconcile.harness import Kaizen


class WithoutPolicies:
    """The real connection, but its capability table leaves Policy out."""

    def __init__(self, api: KaizenApi) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    @property
    def capabilities(self) -> Capabilities:
        served = self._api.capabilities
        return dataclasses.replace(served, kinds=served.kinds - {"Policy"})


def _policy_reads(kaizen: Kaizen) -> list[str]:
    return [
        f"{entry.method} {entry.path}"
        for entry in kaizen.server.request_log()
        if "/policies" in entry.path
    ]


def test_a_kind_the_dialect_does_not_serve_is_never_requested(kaizen: Kaizen) -> None:
    kaizen.apply()  # the examples hold policies: a server that has them
    kaizen.server.clear_request_log()

    async def read(api: KaizenApi) -> tuple[LiveSnapshot, LiveSnapshot]:
        served = await fetch_live(api)
        assert _policy_reads(kaizen)  # the log sees policy reads when they are made
        kaizen.server.clear_request_log()
        return served, await fetch_live(cast(KaizenApi, WithoutPolicies(api)))

    served, without = kaizen.with_api(read)

    assert _policy_reads(kaizen) == []
    assert served.state.of_kind("Policy")
    assert "Policy" not in without.listed
    assert dict(without.state.of_kind("Policy")) == {}
    # The kinds it does serve are read as before.
    assert without.state.of_kind("Agent").keys() == served.state.of_kind("Agent").keys()
