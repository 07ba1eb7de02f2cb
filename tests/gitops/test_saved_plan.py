"""Saved plans end to end: `plan --out` then `apply --plan`, over real HTTP.

A reviewed plan is applied exactly, or refused with nothing changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kaizenctl.api.service import KaizenApi
from kaizenctl.gitops.fingerprint import canonical_json, object_view
from kaizenctl.gitops.saved_plan import read_saved_plan
from kaizenctl.reconcile.live import fetch_live
from tests.gitops.conftest import GitOps


def _apply_examples(gitops: GitOps, examples: Path) -> None:
    result = gitops.cli("apply", str(examples), "--auto-approve")
    assert result.code == 0, result.err


def test_stale_saved_plan_is_refused_with_nothing_changed(
    gitops: GitOps, examples: Path, tmp_path: Path
) -> None:
    _apply_examples(gitops, examples)
    manifest = examples / "agents" / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("temperature: 0.1", "temperature: 0.5"))
    plan_file = tmp_path / "plan.json"
    planned = gitops.cli("plan", str(examples), "--out", str(plan_file), "--detailed-exitcode")
    assert planned.code == 2, planned.err

    # Someone edits an agent by hand after the review.
    async def edit(api: KaizenApi) -> None:
        agents = {a.name: a for a in await api.agents.list_all()}
        await api.agents.update(agents["refunds"].id, {"description": "edited by hand"})

    gitops.with_api(edit)
    gitops.server.clear_request_log()

    refused = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")

    assert refused.code == 1
    assert "nothing was changed" in refused.err
    assert "Agent/refunds: changed since the plan was made" in refused.err
    assert "triage" not in refused.err.split("moved")[-1]
    assert gitops.writes() == []


def test_saved_plan_is_refused_when_a_resource_appeared_or_the_server_differs(
    gitops: GitOps, examples: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    assert gitops.cli("plan", str(examples), "--out", str(plan_file)).code == 0

    async def create(api: KaizenApi) -> None:
        await api.policies.create(
            {"name": "by-hand", "effect": "deny", "resource_type": "agent", "actions": ["delete"]}
        )

    gitops.with_api(create)
    gitops.server.clear_request_log()
    appeared = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")
    assert appeared.code == 1
    assert "Policy/by-hand: created since the plan was made" in appeared.err

    other = tmp_path / "other-server.json"
    data = json.loads(plan_file.read_text())
    data["server"] = "https://kaizen.example.com"
    other.write_text(json.dumps(data))
    wrong_server = gitops.cli("apply", "--plan", str(other), "--auto-approve")
    assert wrong_server.code == 1
    assert "made for https://kaizen.example.com" in wrong_server.err

    data["server"] = json.loads(plan_file.read_text())["server"]
    data["organization_id"] = "another-org"
    other.write_text(json.dumps(data))
    wrong_org = gitops.cli("apply", "--plan", str(other), "--auto-approve")
    assert wrong_org.code == 1
    assert "organization another-org" in wrong_org.err
    assert gitops.writes() == []


def test_fresh_saved_plan_applies_exactly_its_actions(
    gitops: GitOps, examples: Path, tmp_path: Path
) -> None:
    _apply_examples(gitops, examples)
    manifest = examples / "agents" / "triage.yaml"
    original = manifest.read_text()
    manifest.write_text(original.replace("temperature: 0.1", "temperature: 0.5"))
    plan_file = tmp_path / "plan.json"
    assert gitops.cli("plan", str(examples), "--out", str(plan_file)).code == 0
    saved_ids = [a["id"] for a in read_saved_plan(plan_file).plan["actions"]]
    # The manifests move on after review; apply must do the reviewed plan, not the new files.
    manifest.write_text(original.replace("temperature: 0.1", "temperature: 1.5"))

    applied = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve", "--format", "json")

    assert applied.code == 0, applied.err
    plan_line, result_line = applied.out.splitlines()  # JSON Lines: plan, then result
    assert json.loads(plan_line)["type"] == "plan"
    report = json.loads(result_line)
    assert [o["action_id"] for o in report["done"]] == saved_ids
    assert saved_ids == ["update:Agent/triage"]

    async def temperature(api: KaizenApi) -> float:
        return {a.name: a for a in await api.agents.list_all()}["triage"].temperature

    assert gitops.with_api(temperature) == 0.5


def test_saved_plan_holds_no_secret_and_re_resolves_it_at_apply(
    gitops: GitOps, examples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-4f9a1c7e2b"
    monkeypatch.setenv("KEYED_KEY", secret)
    monkeypatch.setenv("KEYED_MAX_TOKENS", "777")
    (examples / "agents" / "keyed.yaml").write_text(
        "apiVersion: kaizen.io/v1\n"
        "kind: Agent\n"
        "metadata: {name: keyed}\n"
        "spec:\n"
        '  system_prompt: "Use key ${KEYED_KEY} for lookups."\n'
        "  provider: openai\n"
        "  model: gpt-4o-mini\n"
        "  max_tokens: ${KEYED_MAX_TOKENS}\n"
    )
    plan_file = tmp_path / "plan.json"
    planned = gitops.cli("plan", str(examples), "--out", str(plan_file))
    assert planned.code == 0, planned.err
    text = plan_file.read_text()
    assert secret not in text
    assert "Use key ${KEYED_KEY} for lookups." in text
    assert secret not in planned.out

    monkeypatch.setenv("KEYED_KEY", "sk-live-rotated-000")
    gitops.server.clear_request_log()
    changed = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")
    assert changed.code == 1
    assert "Agent/keyed spec.system_prompt" in changed.err
    assert "differs from the one the plan was made with" in changed.err
    assert gitops.writes() == []

    monkeypatch.setenv("KEYED_KEY", secret)
    applied = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")
    assert applied.code == 0, applied.err
    assert secret not in applied.out + applied.err

    async def keyed(api: KaizenApi) -> tuple[str, int | None]:
        agent = {a.name: a for a in await api.agents.list_all()}["keyed"]
        return agent.system_prompt, agent.max_tokens

    assert gitops.with_api(keyed) == (f"Use key {secret} for lookups.", 777)


# 1: before sets and the kind registry; 2: untyped (dict) payloads, before #11's typed plan.
@pytest.mark.parametrize("older", [1, 2])
def test_a_saved_plan_of_an_older_format_is_refused_with_a_clear_message(
    gitops: GitOps, examples: Path, tmp_path: Path, older: int
) -> None:
    plan_file = tmp_path / "plan.json"
    assert gitops.cli("plan", str(examples), "--out", str(plan_file)).code == 0
    document = json.loads(plan_file.read_text())
    assert read_saved_plan(plan_file).plan["actions"]  # the current format reads back
    document["format_version"] = older
    plan_file.write_text(json.dumps(document))
    gitops.server.clear_request_log()

    refused = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")

    assert refused.code != 0
    assert f"saved-plan format_version {older} is not 3; make the plan again" in refused.err
    assert gitops.writes() == []


def test_a_saved_plan_whose_payload_does_not_fit_its_verb_is_refused_as_damaged(
    gitops: GitOps, examples: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    assert gitops.cli("plan", str(examples), "--out", str(plan_file)).code == 0
    document = json.loads(plan_file.read_text())
    create = next(a for a in document["plan"]["actions"] if a["verb"] == "create")
    # A hand-edited file: the create now carries a delete's payload.
    create["payload"] = {"type": "delete", "replace": False}
    plan_file.write_text(json.dumps(document))
    gitops.server.clear_request_log()

    refused = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")

    assert refused.code != 0
    assert "damaged saved plan" in refused.err
    assert "a create action cannot carry a delete payload" in refused.err
    assert "nothing was changed" in refused.err
    assert gitops.writes() == []


def test_a_saved_plan_does_not_give_away_a_short_secret_through_its_fingerprints(
    gitops: GitOps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "vault.yaml").write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: vault}\nspec:\n"
        '  system_prompt: "Unlock code is ${PIN}"\n  provider: openai\n  model: m\n'
    )
    monkeypatch.setenv("PIN", "481516")
    assert gitops.cli("apply", str(folder), "--auto-approve").code == 0
    (folder / "vault.yaml").write_text(
        (folder / "vault.yaml").read_text() + "  description: reviewed\n"
    )
    plan_file = tmp_path / "plan.json"
    assert gitops.cli("plan", str(folder), "--out", str(plan_file)).code == 0
    saved = plan_file.read_text()

    # The attacker's best case: every field known, and the right PIN guessed first. A
    # fast digest of that view must match nothing in the file.
    live = gitops.with_api(fetch_live)
    view = object_view(live.state.of_kind("Agent")["vault"])
    assert "Unlock code is 481516" in canonical_json(view)
    fast = hashlib.sha256(canonical_json(view).encode()).hexdigest()
    assert fast not in saved
    assert "481516" not in saved
    fingerprint = json.loads(saved)["fingerprints"]["Agent/vault"]
    assert fingerprint.startswith("scrypt:")
    other_plan = tmp_path / "again.json"
    assert gitops.cli("plan", str(folder), "--out", str(other_plan)).code == 0
    assert json.loads(other_plan.read_text())["fingerprints"]["Agent/vault"] != fingerprint

    # The slow fingerprint still does its job: a hand edit of the secret field is caught,
    # and an untouched plan applies.
    async def edit(api: KaizenApi) -> None:
        (vault,) = await api.agents.list_all()
        await api.agents.update(vault.id, {"system_prompt": "Unlock code is 000000"})

    gitops.with_api(edit)
    refused = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")
    assert refused.code == 1
    assert "nothing was changed" in refused.err
    assert "Agent/vault" in refused.err
    assert gitops.cli("plan", str(folder), "--out", str(plan_file)).code == 0
    applied = gitops.cli("apply", "--plan", str(plan_file), "--auto-approve")
    assert applied.code == 0, applied.err
