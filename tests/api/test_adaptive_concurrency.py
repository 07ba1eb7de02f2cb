"""Adaptive concurrency (AIMD): more requests in flight while the server keeps up, fewer on 429.

The unit tests drive ``AdaptiveLimit`` directly; the last two run a session
against the reference server with its in-flight limit on (``max_in_flight``),
which answers 429 + Retry-After past the limit, and read the server's request
log to show the push-back really happened.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kaizenctl.api.concurrency import INITIAL_LIMIT, AdaptiveLimit, Outcome
from kaizenctl.api.connect import connect_v1
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.settings import ConnectionSettings
from kaizenctl.server.testing import RunningServer
from tests.api.api_helpers import FakeClock, run

pytestmark = pytest.mark.timeout(120)


def test_slow_start_doubles_per_round_trip_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(ceiling=50)
    assert limit.allowed == INITIAL_LIMIT

    async def one_round_trip() -> None:
        windows = [await limit.acquire() for _ in range(limit.allowed)]
        for window in windows:
            limit.release(window, Outcome.ANSWERED)

    async def scenario() -> list[int]:
        seen = []
        for _ in range(4):
            await one_round_trip()
            seen.append(limit.allowed)
        return seen

    assert run(scenario()) == [20, 40, 50, 50]


def test_a_ceiling_below_the_start_is_the_start() -> None:
    assert AdaptiveLimit(ceiling=4).allowed == 4


def test_push_back_halves_once_per_window_then_growth_is_additive() -> None:
    limit = AdaptiveLimit(ceiling=64, initial=16)

    async def scenario() -> None:
        windows = [await limit.acquire() for _ in range(16)]
        # Five 429s from one window of requests are one signal: one halving.
        for window in windows[:5]:
            limit.release(window, Outcome.PUSHED_BACK)
        assert (limit.allowed, limit.decreases) == (8, 1)
        # Answers after the first push-back grow the limit by about one per round trip.
        for window in windows[5:13]:
            limit.release(window, Outcome.ANSWERED)
        assert limit.allowed == 8
        assert 8.9 < limit.limit < 9.0
        # A transport failure says nothing about capacity.
        for window in windows[13:]:
            limit.release(window, Outcome.FAILED)
        assert 8.9 < limit.limit < 9.0
        # A request sent after the halving that is pushed back halves again.
        later = await limit.acquire()
        limit.release(later, Outcome.PUSHED_BACK)
        assert (limit.allowed, limit.decreases) == (4, 2)

    run(scenario())


def test_never_more_in_flight_than_allowed_and_slots_go_in_arrival_order() -> None:
    limit = AdaptiveLimit(ceiling=3, initial=3)
    order: list[int] = []
    most = 0

    async def request(number: int) -> None:
        nonlocal most
        window = await limit.acquire()
        order.append(number)
        most = max(most, limit.in_flight)
        await asyncio.sleep(0)
        limit.release(window, Outcome.ANSWERED)

    async def scenario() -> None:
        await asyncio.gather(*(request(n) for n in range(20)))

    run(scenario())
    assert most == 3
    assert order == list(range(20))
    assert limit.in_flight == 0


def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    limit = AdaptiveLimit(ceiling=1, initial=1)

    async def scenario() -> None:
        held = await limit.acquire()
        waiting = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        limit.release(held, Outcome.ANSWERED)
        assert limit.in_flight == 0
        again = await asyncio.wait_for(limit.acquire(), timeout=1)
        limit.release(again, Outcome.ANSWERED)

    run(scenario())


def _settings(server: RunningServer, **overrides: Any) -> ConnectionSettings:
    values: dict[str, Any] = {
        "api_url": server.url,
        "email": server.email,
        "password": server.password,
    }
    values.update(overrides)
    return ConnectionSettings(**values)


def _read_many(server: RunningServer, count: int, **settings: Any) -> AdaptiveLimit:
    """``count`` concurrent reads through one session; its limiter, for inspection."""
    clock = FakeClock()  # Retry-After is waited out on a fake clock: no real sleeping
    policy = RetryPolicy(max_attempts=30, sleep=clock.sleep, clock=clock)

    async def scenario() -> AdaptiveLimit:
        api = await connect_v1(_settings(server, **settings), policy=policy)
        try:
            server.clear_request_log()
            await asyncio.gather(*(api.session.request("GET", "/users/me") for _ in range(count)))
            return api.session.concurrency
        finally:
            await api.aclose()

    return run(scenario())


def test_against_a_server_that_limits_requests_in_flight_it_rises_then_backs_off(
    server: RunningServer,
) -> None:
    server.set_faults(max_in_flight=16, latency_ms=20, retry_after_s=1)

    limiter = _read_many(server, 300)

    statuses = [entry.status for entry in server.request_log()]
    assert statuses.count(200) == 300  # every request got through: zero failed
    assert limiter.peak_in_flight > INITIAL_LIMIT  # it raised its concurrency...
    assert statuses.count(429) >= 1  # ...until the server pushed back...
    assert limiter.decreases >= 1  # ...and then it backed off
    assert set(statuses) == {200, 429}


def test_parallelism_caps_the_adaptive_limit(server: RunningServer) -> None:
    server.set_faults(max_in_flight=16, latency_ms=20, retry_after_s=1)

    limiter = _read_many(server, 300, parallelism=8)

    statuses = [entry.status for entry in server.request_log()]
    assert limiter.peak_in_flight == 8
    assert statuses.count(200) == 300
    assert 429 not in statuses  # never reached the server's limit
