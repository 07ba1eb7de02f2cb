"""Manifest sets over real HTTP: what --prune may delete, and one apply at a time per set.

Two teams keep their own folders for one organization (set ``team-a``: the
examples; set ``team-b``: a small folder of its own). Ownership records and set
locks are the reference server's ordinary pipelines with reserved names.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from kaizenctl.api.connect import open_api
from kaizenctl.api.models import Graph, GraphNode
from kaizenctl.api.records import ServerRecord
from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import PlanError
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.ownership.inventory import Member, inventory_name, read_inventories
from kaizenctl.ownership.lock import LockHeldError, LockOptions, force_unlock, set_lock, utc_now
from kaizenctl.reconcile import ApplyOptions, PlanOptions, apply_async, plan_async
from kaizenctl.server.testing import RunningServer
from tests.reconcile.harness import Kaizen

TEAM_A = PlanOptions(set_name="team-a")
TEAM_A_PRUNE = PlanOptions(set_name="team-a", prune=True)
TEAM_B = PlanOptions(set_name="team-b")
WRITES = ("POST", "PUT", "PATCH", "DELETE")

TEAM_B_MANIFESTS = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: b-writer}
spec: {system_prompt: Write., provider: openai, model: gpt-4o-mini}
---
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: b-reviewer}
spec: {system_prompt: Review., provider: anthropic, model: claude-3-5-sonnet}
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: b-flow}
spec:
  pattern: sequential
  nodes:
    - {id: write, node_type: agent, agent: b-writer}
    - {id: review, node_type: agent, agent: b-reviewer}
  edges:
    - {from: write, to: review}
---
apiVersion: kaizen.io/v1
kind: Policy
metadata: {name: b-policy}
spec: {effect: allow, resource_type: agent, actions: [read]}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: b-flow-dev}
spec: {pipeline: b-flow, environment: development}
"""


def _team_b(tmp_path: Path) -> Path:
    folder = tmp_path / "team-b"
    folder.mkdir()
    (folder / "all.yaml").write_text(TEAM_B_MANIFESTS)
    return folder


def _apply(kaizen: Kaizen, folder: Path, plan_options: PlanOptions) -> None:
    resources = list(load_manifests([str(folder)]).resources)
    _, result = kaizen.with_api(lambda api: apply_async(api, resources, plan_options))
    assert result.ok, result.outcomes


def _ids(kaizen: Kaizen) -> dict[str, str]:
    """Kind/name -> id of every live agent, pipeline and policy (records included)."""

    async def read(api: KaizenApi) -> dict[str, str]:
        agents, pipelines, policies = await asyncio.gather(
            api.agents.list_all(), api.pipelines.list_all(), api.policies.list_all()
        )
        ids = {f"Agent/{a.name}": a.id for a in agents}
        ids |= {f"Pipeline/{p.name}": p.id for p in pipelines}
        return ids | {f"Policy/{p.name}": p.id for p in policies}

    return kaizen.with_api(read)


def _records(kaizen: Kaizen) -> list[ServerRecord]:
    return kaizen.with_api(lambda api: api.records.list_all())


def _writes(server: RunningServer) -> list[tuple[str, str, int]]:
    return [
        (e.method, e.path, e.status)
        for e in server.request_log()
        if e.method in WRITES and "/auth/" not in e.path
    ]


def test_prune_of_one_set_never_touches_another_sets_resources(
    kaizen: Kaizen, tmp_path: Path
) -> None:
    team_b = _team_b(tmp_path)
    kaizen.server.clear_request_log()
    _apply(kaizen, kaizen.folder, TEAM_A)
    writes = _writes(kaizen.server)
    # The lock, then the intent (the set's record; both are archived pipelines here, each
    # awaited before the next step), then the first create: of an agent, a policy or a
    # pipeline, whichever apply starts first (none of them waits for the others).
    assert [w[:2] for w in writes[:2]] == [("POST", "/api/v1/pipelines")] * 2
    assert writes[2][0] == "POST"
    assert writes[2][1] in {"/api/v1/agents", "/api/v1/policies", "/api/v1/pipelines"}
    _apply(kaizen, team_b, TEAM_B)
    b_ids = {ref: i for ref, i in _ids(kaizen).items() if "/b-" in ref}
    assert len(b_ids) == 4

    # Team A's folder loses its router pipeline (and its deployments).
    (kaizen.folder / "pipelines" / "ticket-router.yaml").unlink()
    (kaizen.folder / "deployments" / "ticket-router.yaml").unlink()
    plan = kaizen.plan(set_name="team-a", prune=True)

    assert sorted(a.summary for a in plan.actions) == [
        "delete Pipeline/ticket-router",
        "undeploy ticket-router/development (v2)",
        "undeploy ticket-router/staging (v2)",
    ]
    others = {f"{u.kind}/{u.name}": u.owners for u in plan.unmanaged}
    assert others == {
        "Agent/b-reviewer": ("team-b",),
        "Agent/b-writer": ("team-b",),
        "Deployment/b-flow/development": ("team-b",),
        "Pipeline/b-flow": ("team-b",),
        "Policy/b-policy": ("team-b",),
    }
    kaizen.server.clear_request_log()
    _, result = kaizen.apply(TEAM_A_PRUNE)

    assert result.ok, result.outcomes
    touched = {path.rsplit("/", 1)[-1] for _, path, _ in _writes(kaizen.server)}
    assert not touched & set(b_ids.values())
    assert {ref: i for ref, i in _ids(kaizen).items() if "/b-" in ref} == b_ids
    b_plan = kaizen.with_api(
        lambda api: plan_async(api, list(load_manifests([str(team_b)]).resources), TEAM_B)
    )[0]
    assert not b_plan.has_changes
    assert not kaizen.plan(set_name="team-a", prune=True).has_changes


def test_a_resource_declared_by_two_sets_is_refused_naming_its_owner(
    kaizen: Kaizen, tmp_path: Path
) -> None:
    team_b = _team_b(tmp_path)
    _apply(kaizen, team_b, TEAM_B)
    shutil.copy(team_b / "all.yaml", kaizen.folder / "team-b-copy.yaml")

    with pytest.raises(
        PlanError, match=r"Agent/b-writer is owned by set team-b, not by set 'team-a'"
    ):
        kaizen.plan(set_name="team-a")


def test_hand_made_resources_are_deleted_only_with_prune_unmanaged(kaizen: Kaizen) -> None:
    kaizen.apply(TEAM_A)

    async def by_hand(api: KaizenApi) -> None:
        await api.policies.create(
            {"name": "by-hand", "effect": "deny", "resource_type": "agent", "actions": ["x"]}
        )

    kaizen.with_api(by_hand)
    pruned = kaizen.plan(set_name="team-a", prune=True)
    assert not pruned.has_changes
    assert [(u.name, u.owners) for u in pruned.unmanaged] == [("by-hand", ())]
    everything = kaizen.plan(set_name="team-a", prune_unmanaged=True)
    assert [a.id for a in everything.actions] == ["delete:Policy/by-hand"]


def test_an_owned_agent_still_used_by_a_hand_made_graph_is_kept_and_its_holder_named(
    kaizen: Kaizen,
) -> None:
    kaizen.apply(TEAM_A)

    async def hand_made_pipeline(api: KaizenApi) -> None:
        summarizer = next(a for a in await api.agents.list_all() if a.name == "summarizer")
        pipeline = await api.pipelines.create({"name": "by-hand", "pattern": "sequential"})
        await api.pipelines.put_graph(
            pipeline.id,
            Graph(nodes=[GraphNode(id="s", node_type="agent", agent_id=summarizer.id)], edges=[]),
        )

    kaizen.with_api(hand_made_pipeline)
    # The summarizer leaves team A's manifests (and the graphs that used it).
    for pipeline in ("support", "ticket-router"):
        (kaizen.folder / "pipelines" / f"{pipeline}.yaml").unlink()
        (kaizen.folder / "deployments" / f"{pipeline}.yaml").unlink()
    kaizen.edit("agents/specialists.yaml", "name: summarizer", "name: summarizer-two")

    plan = kaizen.plan(set_name="team-a", prune=True, allow_delete_all=True)

    deleted = {a.ref for a in plan.actions if a.verb == "delete"}
    assert "Agent/summarizer" not in deleted
    assert {"Pipeline/support", "Pipeline/ticket-router"} <= deleted
    [kept] = [u for u in plan.unmanaged if u.name == "summarizer"]
    assert kept.owners == ("team-a",)
    assert kept.held_by == ("Pipeline/by-hand (unmanaged)",)
    assert any("Agent/summarizer is no longer declared but is kept" in w for w in plan.warnings)
    _, result = kaizen.apply(
        PlanOptions(set_name="team-a", prune=True, allow_delete_all=True),
        ApplyOptions(allowed_flags=frozenset({"--allow-production-delete"})),
    )
    assert result.ok, result.outcomes
    assert "Agent/summarizer" in _ids(kaizen)


def test_a_set_applied_without_a_record_first_takes_ownership_and_deletes_nothing(
    kaizen: Kaizen,
) -> None:
    kaizen.apply()
    # What a kaizenctl from before ownership records leaves: the resources, no record.
    [record] = [r for r in _records(kaizen) if r.name == inventory_name("default")]
    kaizen.with_api(lambda api: api.records.delete(record.id))
    (kaizen.folder / "policies" / "governance.yaml").unlink()

    plan = kaizen.plan(prune=True)

    assert not plan.has_record
    assert plan.actions == ()
    assert len(plan.adopt) == 8  # 6 agents and 2 pipelines; the policies left the folder
    assert {a.kind for a in plan.adopt} == {"Agent", "Pipeline"}
    assert sorted(u.name for u in plan.unmanaged if u.kind == "Policy") == [
        "no-prod-deletes",
        "redact-card-numbers",
        "refunds-need-approval",
        "support-team-deploys",
    ]
    assert all(u.owners == () for u in plan.unmanaged)

    _, result = kaizen.apply(PlanOptions(prune=True))

    assert result.outcomes == ()
    assert len([r for r in _ids(kaizen) if r.startswith("Policy/")]) == 4
    inventories = read_inventories(_records(kaizen))
    members = inventories["default"].members
    assert sorted(m.ref for m in members) == sorted(f"{a.kind}/{a.name}" for a in plan.adopt)
    assert all(isinstance(m, Member) and m.id for m in members)
    again = kaizen.plan(prune=True)
    assert again.adopt == ()
    assert not again.has_changes


def test_two_applies_started_together_one_writes_the_other_refuses_with_zero_writes(
    kaizen: Kaizen,
) -> None:
    resources = kaizen.resources()

    async def one(name: str) -> str:
        async with open_api(kaizen.settings) as api:
            try:
                await apply_async(
                    api, resources, TEAM_A, ApplyOptions(lock=LockOptions(holder=name))
                )
            except LockHeldError as error:
                return f"refused: {error}"
        return "applied"

    async def both() -> list[str]:
        return list(await asyncio.gather(one("first"), one("second")))

    kaizen.server.clear_request_log()
    outcomes = asyncio.run(both())

    assert sorted(o.split(":")[0] for o in outcomes) == ["applied", "refused"]
    refusal = next(o for o in outcomes if o.startswith("refused"))
    winner = "first" if outcomes[0] == "applied" else "second"
    assert f"is locked by {winner} since" in refusal
    assert "nothing was changed" in refusal
    writes = Counter(
        (m, p if m == "POST" else p.rsplit("/", 1)[0], s) for m, p, s in _writes(kaizen.server)
    )
    assert writes[("POST", "/api/v1/agents", 201)] == 6
    # The loser's one write was its lock create, refused: 409, nothing stored.
    assert writes[("POST", "/api/v1/pipelines", 409)] == 1
    assert not kaizen.plan(set_name="team-a").has_changes


def test_a_second_apply_waits_for_the_first_then_finds_nothing_to_do(kaizen: Kaizen) -> None:
    resources = kaizen.resources()
    first_done = asyncio.Event()
    waited: list[float] = []

    async def wait_for_first(seconds: float) -> None:
        waited.append(seconds)
        await first_done.wait()

    async def one(name: str) -> int:
        options = ApplyOptions(
            lock=LockOptions(holder=name, timeout=600, sleep=wait_for_first, poll_interval=5)
        )
        async with open_api(kaizen.settings) as api:
            plan, result = await apply_async(api, resources, TEAM_A, options)
        first_done.set()
        assert result.ok, result.outcomes
        return len(plan.actions)

    async def both() -> list[int]:
        return list(await asyncio.gather(one("first"), one("second")))

    counts = sorted(asyncio.run(both()))

    assert counts == [0, 19]  # the one that waited planned from fresh state: nothing to do
    assert waited == [5]
    agents = [p for m, p, _ in _writes(kaizen.server) if m == "POST" and p == "/api/v1/agents"]
    assert len(agents) == 6


def test_plan_takes_no_lock_and_says_who_holds_it(kaizen: Kaizen) -> None:
    async def hold_then_plan(api: KaizenApi) -> tuple[list[str], int]:
        async with set_lock(api.records, "team-a", LockOptions(holder="ci run 42")):
            kaizen.server.clear_request_log()
            plan, _ = await plan_async(api, kaizen.resources(), TEAM_A)
            return list(plan.warnings), len(_writes(kaizen.server))

    warnings, writes = kaizen.with_api(hold_then_plan)

    assert writes == 0
    assert any("being applied by ci run 42 since" in w for w in warnings)


def test_a_lock_past_its_lease_is_taken_over_and_its_holder_stops_at_its_next_renewal(
    kaizen: Kaizen,
) -> None:
    async def scenario(api: KaizenApi) -> tuple[bool, bool]:
        async with open_api(kaizen.settings) as other:
            stale = set_lock(api.records, "team-a", LockOptions(holder="slow", lease=60))
            held = await stale.__aenter__()
            try:
                later = LockOptions(holder="next", clock=lambda: utc_now() + timedelta(seconds=61))
                async with set_lock(other.records, "team-a", later) as taken:
                    renewed = await held.renew()
                    return renewed, taken.lost
            finally:
                await stale.__aexit__(None, None, None)

    renewed, taker_lost = kaizen.with_api(scenario)

    assert renewed is False
    assert taker_lost is False


def test_force_unlock_needs_the_lock_id_of_the_current_holder(kaizen: Kaizen) -> None:
    async def scenario(api: KaizenApi) -> tuple[str, str]:
        async with set_lock(api.records, "team-a", LockOptions(holder="stuck")) as held:
            with pytest.raises(Exception, match="has no lock with id not-it"):
                await force_unlock(api.records, "team-a", "not-it")
            claim = await force_unlock(api.records, "team-a", held.lock_id)
            still_ours = await held.renew()
            assert still_ours is False
            return claim.describe(), held.lock_id

    described, lock_id = kaizen.with_api(scenario)

    assert described.startswith("stuck since")
    assert lock_id in described
