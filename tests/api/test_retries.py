"""Retries against the in-memory fake: 429s, 5xx, resets, and creates that must not duplicate."""

from __future__ import annotations

import httpx
import pytest

from kaizenctl.api.connect import connect_v1
from kaizenctl.api.contract_v1 import ContractV1Api
from kaizenctl.api.errors import (
    DuplicateNameError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from kaizenctl.api.models import Agent, Deployment
from kaizenctl.api.retry import Disposition, RetryPolicy, classify_status, parse_retry_after
from tests.api.api_fake import AGENT, FakeKaizen, Fault
from tests.api.api_helpers import FakeClock, run, token_settings, with_api


def test_a_429_at_request_n_is_waited_out_for_retry_after(
    fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock
) -> None:
    fake.seed_agents(1)
    fake.add_fault("GET", "/agents/a-000", Fault("answer", 429, {"Retry-After": "3"}))

    async def scenario(api: ContractV1Api) -> Agent:
        await api.agents.list_all()  # request 1 passes
        return await api.agents.get("a-000")  # request 2 meets the 429

    agent = with_api(fake, policy, scenario)
    assert agent.name == "agent-000"
    assert clock.sleeps == [3.0]
    assert fake.count("GET", "/agents/a-000") == 2


def test_retry_after_is_capped_and_a_server_that_never_relents_is_an_error(
    fake: FakeKaizen, clock: FakeClock
) -> None:
    policy = RetryPolicy(
        sleep=clock.sleep, clock=clock, retry_after_cap=5, total_budget=12, max_attempts=50
    )
    fake.add_fault("GET", "/agents", Fault("answer", 429, {"Retry-After": "3600"}), times=99)

    with pytest.raises(RateLimitedError) as caught:
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert clock.sleeps == [5.0, 5.0]  # capped, and a third wait would pass the 12 s budget
    message = str(caught.value)
    assert "GET /api/v1/agents answered 429" in message


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_get_meeting_a_gateway_error_backs_off_and_retries(
    status: int, fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock
) -> None:
    fake.add_fault("GET", "/agents", Fault("answer", status), times=3)
    assert with_api(fake, policy, lambda api: api.agents.list_all()) == []
    # exponential, jitter pinned to the middle of [ceiling/2, ceiling]
    assert clock.sleeps == pytest.approx([0.075, 0.15, 0.3])


def test_a_500_is_not_retried(fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock) -> None:
    fake.add_fault("GET", "/agents", Fault("answer", 500, detail="boom"))
    with pytest.raises(ServerError, match="GET /api/v1/agents answered 500: boom"):
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert clock.sleeps == []


def test_a_get_whose_answer_is_lost_is_sent_again(fake: FakeKaizen, policy: RetryPolicy) -> None:
    fake.add_fault("GET", "/agents", Fault("reset_after_commit"), times=2)
    assert with_api(fake, policy, lambda api: api.agents.list_all()) == []
    assert fake.count("GET", "/agents") == 3


def test_connection_errors_that_never_stop_become_a_transport_error(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.add_fault("GET", "/agents", Fault("connect_error"), times=99)
    with pytest.raises(TransportError, match="cannot connect"):
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert fake.count("GET", "/agents") == policy.max_attempts


def test_a_connection_reset_after_a_committed_create_makes_no_duplicate(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.add_fault("POST", "/agents", Fault("reset_after_commit"))
    agent = with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))
    assert agent.name == "triage"
    assert [a["name"] for a in fake.agents.values()] == ["triage"]
    assert fake.count("POST", "/agents") == 1  # looked up, not re-posted


def test_a_create_lost_before_the_server_saw_it_is_sent_again_after_looking(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.add_fault("POST", "/agents", Fault("reset_before"))
    agent = with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))
    assert agent.name == "triage"
    assert len(fake.agents) == 1
    assert fake.count("POST", "/agents") == 2
    lookups = [r for r in fake.requests if r.method == "GET" and r.url.params.get("search")]
    assert len(lookups) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_a_create_behind_a_gateway_error_is_looked_up_not_reposted(
    status: int, fake: FakeKaizen, policy: RetryPolicy
) -> None:
    # The fake answers the fault *instead of* processing; pre-create to play "it did commit".
    fake.agents["a-x"] = {"id": "a-x", **AGENT}
    fake.add_fault("POST", "/agents", Fault("answer", status))
    agent = with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))
    assert agent.id == "a-x"
    assert fake.count("POST", "/agents") == 1


def test_a_create_refused_with_429_is_simply_resent(
    fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock
) -> None:
    fake.add_fault("POST", "/agents", Fault("answer", 429, {"Retry-After": "1"}))
    with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))
    assert fake.count("POST", "/agents") == 2
    assert len(fake.agents) == 1
    assert not [r for r in fake.requests if r.url.params.get("search")]
    assert clock.sleeps == [1.0]


def test_a_create_answered_503_is_looked_up_before_it_is_sent_again(
    fake: FakeKaizen, policy: RetryPolicy, clock: FakeClock
) -> None:
    # CONTRACT.md: a 503 may have taken effect. Here it did not: look, then post again
    # after the 503's Retry-After.
    fake.add_fault("POST", "/agents", Fault("answer", 503, {"Retry-After": "2"}))
    with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))
    assert fake.count("POST", "/agents") == 2
    assert len(fake.agents) == 1
    assert len([r for r in fake.requests if r.url.params.get("search")]) == 1
    assert clock.sleeps == [2.0]


def test_a_create_answered_503_that_did_commit_is_found_not_reposted(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.agents["a-x"] = {"id": "a-x", **AGENT}  # the fake answers instead: play "it committed"
    fake.add_fault("POST", "/agents", Fault("answer", 503, {"Retry-After": "1"}))
    agent = with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))
    assert agent.id == "a-x"
    assert fake.count("POST", "/agents") == 1


def test_a_delete_answered_503_counts_404_on_retry_as_done(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.add_fault("DELETE", "/agents/a-000", Fault("answer", 503))
    with_api(fake, policy, lambda api: api.agents.delete("a-000"))  # never existed: 404 after
    assert fake.count("DELETE", "/agents/a-000") == 2


def test_429s_with_retry_after_do_not_use_up_the_attempts_only_the_time_budget(
    fake: FakeKaizen, clock: FakeClock
) -> None:
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, max_attempts=3, total_budget=30)
    fake.add_fault("GET", "/agents", Fault("answer", 429, {"Retry-After": "1"}), times=12)
    assert with_api(fake, policy, lambda api: api.agents.list_all()) == []
    assert clock.sleeps == [1.0] * 12
    # ...but they are bounded by total wait time: a server that never relents is an error.
    fake.add_fault("GET", "/agents", Fault("answer", 429, {"Retry-After": "1"}), times=99)
    clock.sleeps.clear()
    with pytest.raises(RateLimitedError):
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert clock.sleeps == [1.0] * 30


def test_a_429_asking_for_no_wait_still_counts_as_an_attempt(
    fake: FakeKaizen, clock: FakeClock
) -> None:
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, max_attempts=3)
    fake.add_fault("GET", "/agents", Fault("answer", 429, {"Retry-After": "0"}), times=99)
    with pytest.raises(RateLimitedError):
        with_api(fake, policy, lambda api: api.agents.list_all())
    assert fake.count("GET", "/agents") == 3


def test_a_lost_create_found_twice_by_name_refuses_to_guess(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.agents["a-1"] = {"id": "a-1", **AGENT}
    fake.agents["a-2"] = {"id": "a-2", **AGENT}
    fake.add_fault("POST", "/agents", Fault("answer", 502))
    with pytest.raises(DuplicateNameError, match="a-1, a-2"):
        with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))


def test_a_delete_whose_answer_was_lost_counts_404_on_retry_as_done(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.seed_agents(1)
    fake.add_fault("DELETE", "/agents/a-000", Fault("reset_after_commit"))
    with_api(fake, policy, lambda api: api.agents.delete("a-000"))
    assert fake.agents == {}
    assert fake.count("DELETE", "/agents/a-000") == 2


def test_a_delete_of_something_missing_is_still_not_found(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    with pytest.raises(NotFoundError, match="DELETE /api/v1/agents/nope answered 404"):
        with_api(fake, policy, lambda api: api.agents.delete("nope"))


def test_a_lost_agent_version_answer_is_resolved_from_the_versions_list(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    fake.seed_agents(1)
    fake.versions["a-000"] = [{"id": "v-0", "agent_id": "a-000", "version": 1, "snapshot": {}}]
    fake.add_fault("POST", "/agents/a-000/versions", Fault("reset_after_commit"))
    version = with_api(fake, policy, lambda api: api.agents.create_version("a-000"))
    assert version.version == 2
    assert len(fake.versions["a-000"]) == 2


def _seed_pipeline(fake: FakeKaizen, version: int = 3) -> None:
    fake.pipelines["p-1"] = {
        "id": "p-1",
        "name": "support",
        "pattern": "sequential",
        "version": version,
    }


def test_a_lost_deploy_answer_is_found_in_the_deployments_list(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    _seed_pipeline(fake)
    fake.add_fault("POST", "/deployments", Fault("reset_after_commit"))
    deployment = with_api(fake, policy, lambda api: api.deployments.deploy("p-1", "staging"))
    assert deployment.pipeline_version == 3
    assert len(fake.deployments) == 1
    assert fake.count("POST", "/deployments") == 1


def test_after_a_full_listing_a_lost_deploy_is_resolved_without_listing_first(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    _seed_pipeline(fake)
    # An older deployment of the pair, seen in the full listing, must not be taken for ours.
    fake._new_deployment("p-1", "staging", 2)
    fake.add_fault("POST", "/deployments", Fault("reset_after_commit"))

    async def list_then_deploy(api: ContractV1Api) -> Deployment:
        await api.deployments.list_all()
        lists_before = fake.count("GET", "/deployments")
        deployment = await api.deployments.deploy("p-1", "staging")
        # one list only: the look-up after the lost answer, none before sending
        assert fake.count("GET", "/deployments") == lists_before + 1
        return deployment

    deployment = with_api(fake, policy, list_then_deploy)
    assert deployment.pipeline_version == 3
    assert len(fake.deployments) == 2
    assert fake.count("POST", "/deployments") == 1


def test_a_lost_deploy_that_never_landed_is_sent_again_once(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    _seed_pipeline(fake)
    # An older deployment of the same pair must not be taken for ours.
    fake._new_deployment("p-1", "staging", 3)
    fake.add_fault("POST", "/deployments", Fault("reset_before"))
    deployment = with_api(fake, policy, lambda api: api.deployments.deploy("p-1", "staging"))
    assert len(fake.deployments) == 2
    assert fake.count("POST", "/deployments") == 2
    assert deployment.id in fake.deployments


def test_a_lost_promote_answer_is_matched_on_the_sources_version(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    _seed_pipeline(fake, version=7)
    source = fake._new_deployment("p-1", "staging", 5).json()
    fake.add_fault("POST", f"/deployments/{source['id']}/promote", Fault("reset_after_commit"))
    promoted = with_api(
        fake, policy, lambda api: api.deployments.promote(source["id"], "production")
    )
    assert (promoted.environment, promoted.pipeline_version) == ("production", 5)
    assert len(fake.deployments) == 2


def test_a_lost_rollback_answer_is_found_not_repeated(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    _seed_pipeline(fake)
    source = fake._new_deployment("p-1", "staging", 3).json()
    fake.add_fault("POST", f"/deployments/{source['id']}/rollback", Fault("reset_after_commit"))
    rolled = with_api(fake, policy, lambda api: api.deployments.rollback(source["id"]))
    assert rolled.pipeline_version == 1
    assert len(fake.deployments) == 2
    assert fake.count("POST", f"/deployments/{source['id']}/rollback") == 1


def test_a_lost_create_answer_exhausting_the_budget_says_it_may_have_happened(
    fake: FakeKaizen, clock: FakeClock
) -> None:
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, max_attempts=2)
    fake.add_fault("POST", "/agents", Fault("reset_before"), times=5)
    with pytest.raises(OutcomeUnknownError, match="may have taken effect"):
        with_api(fake, policy, lambda api: api.agents.create(dict(AGENT)))


def test_retry_rules_in_one_table() -> None:
    assert classify_status(429) is Disposition.RESEND
    assert classify_status(503) is Disposition.MAYBE_DONE
    assert classify_status(502) is Disposition.MAYBE_DONE
    assert classify_status(504) is Disposition.MAYBE_DONE
    for status in (200, 400, 401, 404, 409, 422, 500):
        assert classify_status(status) is Disposition.DONE
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_an_httpx_error_outside_the_transport_family_is_still_ours(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.TooManyRedirects("loop", request=request)

    async def scenario(api: ContractV1Api) -> object:
        return await api.agents.list_all()

    from kaizenctl.api.connect import connect_v1
    from tests.api.api_helpers import run, token_settings

    async def main() -> None:
        api = await connect_v1(token_settings(), transport=httpx.MockTransport(boom), policy=policy)
        try:
            await scenario(api)
        finally:
            await api.aclose()

    with pytest.raises(TransportError):
        run(main())


def test_a_lost_promote_is_not_mistaken_for_someone_elses_deploy_of_another_version(
    fake: FakeKaizen, policy: RetryPolicy
) -> None:
    _seed_pipeline(fake, version=7)
    source = fake._new_deployment("p-1", "staging", 5).json()
    promote_path = f"/deployments/{source['id']}/promote"
    fake.add_fault("POST", promote_path, Fault("reset_before"))  # never reached the server

    async def racing(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/promote") and fake.count("POST", promote_path) == 0:
            # Meanwhile a CI job deploys the pipeline's current v7 to production.
            fake._new_deployment("p-1", "production", 7)
        return await fake.handle(request)

    async def main() -> Deployment:
        api = await connect_v1(
            token_settings(), transport=httpx.MockTransport(racing), policy=policy
        )
        try:
            return await api.deployments.promote(source["id"], "production")
        finally:
            await api.aclose()

    promoted = run(main())
    # The look-up saw a new v7 deployment, not the v5 a promote of staging makes: not ours.
    assert promoted.pipeline_version == 5
    assert fake.count("POST", promote_path) == 2
