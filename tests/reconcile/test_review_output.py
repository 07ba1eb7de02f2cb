"""What a reviewer reads must be exactly what apply does (issue 14, items 1-5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kaizenctl.cli import main
from kaizenctl.manifests.loader import load_manifests
from kaizenctl.reconcile.diff import build_plan
from kaizenctl.reconcile.live import LiveSnapshot
from kaizenctl.reconcile.plan import Action, CreatePayload, FieldChange, Plan, UpdatePayload
from kaizenctl.reconcile.state import (
    EdgeKey,
    GraphState,
    NodeState,
    ObjectState,
    State,
    desired_state,
)
from kaizenctl.render import MARKDOWN_LIMIT, render_plan
from kaizenctl.server.testing import RunningServer
from tests.paths import EXAMPLES
from tests.reconcile.harness import Kaizen

OLD_PROMPT = "You resolve billing questions…\nQuote the plan.\nBe brief.\n"
NEW_PROMPT = "You resolve billing questions…\nQuote the plan and invoices.\nBe brief.\n"


def _prompt_edit() -> Plan:
    return Plan(
        actions=(
            Action(
                id="update:Agent/billing",
                verb="update",
                kind="Agent",
                name="billing",
                summary="update Agent/billing",
                changes=(
                    FieldChange(field="system_prompt", before=OLD_PROMPT, after=NEW_PROMPT),
                ),
                payload=UpdatePayload(changes={"system_prompt": NEW_PROMPT}),
            ),
        )
    )


# ---- item 1: a multi-line string edit is a line diff, in real characters ------------------


def test_item1_a_prompt_edited_on_its_second_line_shows_that_line_in_text() -> None:
    text = render_plan(_prompt_edit(), "text")

    assert "      ~ system_prompt:\n" in text
    assert "            You resolve billing questions…\n" in text  # context, unchanged
    assert "          - Quote the plan.\n" in text
    assert "          + Quote the plan and invoices.\n" in text
    assert "\\u2026" not in text


def test_item1_a_prompt_edited_on_its_second_line_shows_that_line_in_markdown() -> None:
    markdown = render_plan(_prompt_edit(), "markdown")

    start = markdown.index("```diff")
    diff = markdown[start : markdown.index("```", start + 3)]
    assert "\n-   Quote the plan.\n" in diff
    assert "\n+   Quote the plan and invoices.\n" in diff
    assert "\\u2026" not in markdown
    assert "You resolve billing questions…" in markdown


def test_item1_single_line_values_print_real_characters() -> None:
    plan = Plan(
        actions=(
            Action(
                id="create:Agent/a",
                verb="create",
                kind="Agent",
                name="a",
                summary="create Agent/a",
                changes=(FieldChange(field="system_prompt", after="Grüße…\nzweite Zeile"),),
                payload=CreatePayload(fields={"system_prompt": "Grüße…\nzweite Zeile"}),
            ),
        )
    )

    text = render_plan(plan, "text")

    assert '+ system_prompt = "Grüße… …" (2 lines)' in text
    assert "\\u" not in text


# ---- item 2: a create lists only what it sets ---------------------------------------------


def _empty_live() -> LiveSnapshot:
    return LiveSnapshot(state=State(), listed={}, deployments=[])


def test_item2_a_create_shows_no_null_to_null_changes() -> None:
    desired = desired_state(list(load_manifests([str(EXAMPLES)]).resources))
    plan = build_plan(desired, _empty_live())

    refunds = plan.action("create:Agent/refunds")  # no max_tokens in its manifest
    assert "max_tokens" not in [c.field for c in refunds.changes]
    assert all(c.after is not None for a in plan.actions for c in a.changes if a.verb == "create")
    text = render_plan(plan, "text")
    markdown = render_plan(plan, "markdown")
    assert "null → null" not in text
    assert "null → null" not in markdown


# ---- item 3: deployments by manifest name, production apart, server and org named --------


def test_item3_deployments_are_named_and_production_is_set_apart(
    kaizen: Kaizen, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAIZEN_API_URL", kaizen.server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", kaizen.server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", kaizen.server.password)
    monkeypatch.delenv("KAIZEN_TOKEN", raising=False)

    assert main(["plan", str(kaizen.folder)]) == 0
    text = capsys.readouterr().out
    assert "» Deployment/support-dev: support in development (none) → v2 (deploy)" in text
    production = text[text.index("Deployment/support-prod") :]
    assert production.splitlines()[1].strip() == "! production: this changes what production runs"

    assert main(["plan", "--format", "markdown", str(kaizen.folder)]) == 0
    markdown = capsys.readouterr().out
    organization = kaizen.with_api(lambda api: api.current_user()).organization_id
    assert f"Planned against `{kaizen.server.url}`, organization `{organization}`." in markdown
    section = markdown[markdown.index("#### :rotating_light: Production (1)") :]
    section = section[: section.index("\n\n")]
    assert "Deployment/support-prod: support in production" in section
    changes = markdown[markdown.index("#### Changes") :]
    assert "Deployment/support-prod" not in changes[: changes.index("\n\n")]


# ---- item 4: list items GitHub renders as written; trimming at whole blocks --------------


def test_item4_markdown_list_items_do_not_start_with_a_list_marker() -> None:
    desired = desired_state(list(load_manifests([str(EXAMPLES)]).resources))
    markdown = render_plan(build_plan(desired, _empty_live()), "markdown")

    items = [line for line in markdown.splitlines() if line.startswith("- ")]
    assert items
    for item in items:
        assert not re.match(r"- [-+*] ", item), item
    assert "- `+ create Agent/triage`" in markdown


def _big_plan(count: int) -> Plan:
    return Plan(
        actions=tuple(
            Action(
                id=f"update:Agent/a{i}",
                verb="update",
                kind="Agent",
                name=f"a{i}",
                summary=f"update Agent/a{i}",
                changes=(
                    FieldChange(field="system_prompt", before="x" * 400, after="y`" * 200),
                ),
                payload=UpdatePayload(changes={"system_prompt": "y`" * 200}),
            )
            for i in range(count)
        )
    )


def test_item4_a_trimmed_comment_keeps_whole_blocks_and_counts_what_it_left_out() -> None:
    markdown = render_plan(_big_plan(190), "markdown")

    assert len(markdown) <= MARKDOWN_LIMIT
    body, note = markdown.rsplit("\n\n", 1)
    kept = body.count("<details>")
    assert kept == body.count("</details>")  # no block cut in half
    assert body.count("```") % 2 == 0  # every fence closed
    match = re.search(r"plan trimmed to fit a comment: (\d+) detail sections left out", note)
    assert match is not None, note
    assert kept + int(match.group(1)) == 190


# ---- item 5: Mermaid keeps distinct nodes distinct and shows a changed agent --------------


def _graph_change(live: GraphState, desired: GraphState) -> Plan:
    state = State(
        objects={
            "Pipeline": {
                "p": ObjectState(
                    "Pipeline", "p", {}, live_id="p-1", graph=live, version=2
                )
            }
        }
    )
    snapshot = LiveSnapshot(state=state, listed={}, deployments=[])
    wanted = State(objects={"Pipeline": {"p": ObjectState("Pipeline", "p", {}, graph=desired)}})
    return build_plan(wanted, snapshot)


def _node(agent: str | None) -> NodeState:
    return NodeState(node_type="agent", agent=agent, config={}, position=(0.0, 0.0))


def _mermaid_block(markdown: str) -> str:
    start = markdown.index("```mermaid")
    return markdown[start : markdown.index("```", start + 3)]


def test_item5_node_ids_that_differ_only_in_punctuation_stay_two_nodes() -> None:
    live = GraphState(nodes={"a-b": _node("x")})
    desired = GraphState(
        nodes={"a-b": _node("x"), "a_b": _node("y")}, edges=frozenset({EdgeKey("a-b", "a_b")})
    )

    drawing = _mermaid_block(render_plan(_graph_change(live, desired), "markdown"))

    declared = dict(re.findall(r'^\s+(\w+)\["[+~-]? ?([^"<]+)', drawing, re.MULTILINE))
    assert sorted(declared.values()) == ["a-b", "a_b"]
    assert len(declared) == 2
    ids = {label: mermaid_id for mermaid_id, label in declared.items()}
    assert f"{ids['a-b']} ==>" in drawing
    assert drawing.rstrip().count(ids["a_b"]) == 2  # declared once, target of the edge


def test_item5_a_node_whose_agent_changed_shows_both_agents() -> None:
    live = GraphState(nodes={"billing": _node("billing-old")})
    desired = GraphState(nodes={"billing": _node("billing-new")})

    drawing = _mermaid_block(render_plan(_graph_change(live, desired), "markdown"))

    assert '["~ billing<br/>billing-old → billing-new"]:::changed' in drawing


def test_cli_markdown_plan_names_where_it_was_planned(
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """apply --format markdown heads its plan the same way (the PR-comment path of CI)."""
    monkeypatch.setenv("KAIZEN_API_URL", server.url)
    monkeypatch.setenv("KAIZEN_EMAIL", server.email)
    monkeypatch.setenv("KAIZEN_PASSWORD", server.password)
    agent = tmp_path / "a.yaml"
    agent.write_text(
        "apiVersion: kaizen.io/v1\nkind: Agent\nmetadata: {name: a}\n"
        "spec: {system_prompt: x, provider: openai, model: m}\n"
    )

    assert main(["apply", "--auto-approve", "--format", "markdown", str(agent)]) == 0

    assert f"Planned against `{server.url}`" in capsys.readouterr().out
