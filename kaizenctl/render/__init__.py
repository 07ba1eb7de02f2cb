"""One renderer for all output: text (Terraform-like), JSON (versioned), Markdown (PR comments).

Nothing in the core prints; the CLI picks a format and prints what this returns.
Every string leaves through ``redact`` and sensitive values are masked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from kaizenctl.reconcile.apply import OUTCOME_STATUSES, ApplyResult
from kaizenctl.reconcile.diff import PRODUCTION
from kaizenctl.reconcile.plan import (
    VERB_SYMBOLS,
    Action,
    AgentSlot,
    FieldChange,
    Plan,
    SlotPayload,
    Unmanaged,
)
from kaizenctl.redact import MASK, redact

Format = Literal["text", "json", "markdown"]
JSON_FORMAT_VERSION = 1
MAX_VALUE_WIDTH = 100
# GitHub refuses comments over 65,536 characters; leave room for the trailer.
MARKDOWN_LIMIT = 60_000
MARKDOWN_DETAILED_ACTIONS = 200

# Under each action that changes what production runs, so that it stands out.
PRODUCTION_NOTE = "production: this changes what production runs"

_COLORS = {"+": "green", "~": "yellow", "-": "red", "»": "cyan", "«": "magenta"}


def _style(text: str, symbol: str, color: bool) -> str:
    if not color:
        return text
    import click

    return click.style(text, fg=_COLORS.get(symbol))


def format_value(value: Any, sensitive: bool = False, width: int = MAX_VALUE_WIDTH) -> str:
    if sensitive:
        return MASK
    if isinstance(value, str) and "\n" in value:
        first = value.splitlines()[0] if value.strip() else ""
        text = json.dumps(first + " …", ensure_ascii=False) + f" ({len(value.splitlines())} lines)"
    else:
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text


# Unchanged lines shown around each changed one in a multi-line diff (as `diff -U2`).
LINE_DIFF_CONTEXT = 2


def is_multiline_change(change: FieldChange) -> bool:
    """A string edited on one of several lines: shown as a line diff, not before → after."""
    return (
        not change.sensitive
        and isinstance(change.before, str)
        and isinstance(change.after, str)
        and ("\n" in change.before.rstrip("\n") or "\n" in change.after.rstrip("\n"))
    )


def line_diff(before: str, after: str, context: int = LINE_DIFF_CONTEXT) -> list[tuple[str, str]]:
    """(mark, line) pairs: " " unchanged, "-" removed, "+" added, "…" for hidden unchanged lines."""
    import difflib

    old, new = before.splitlines(), after.splitlines()
    if old == new:
        # Only line endings differ: say so rather than show two identical texts.
        ending = "ends with a newline" if after.endswith("\n") else "has no final newline"
        return [("~", f"(only the line endings differ; the new text {ending})")]
    lines: list[tuple[str, str]] = []
    groups = difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_grouped_opcodes(context)
    shown_until = 0
    for group in groups:
        first = group[0][1]
        if first > shown_until:
            lines.append(("…", f"({first - shown_until} unchanged lines)"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines.extend((" ", line) for line in old[i1:i2])
                continue
            lines.extend(("-", line) for line in old[i1:i2])
            lines.extend(("+", line) for line in new[j1:j2])
        shown_until = group[-1][2]
    if shown_until < len(old):
        lines.append(("…", f"({len(old) - shown_until} unchanged lines)"))
    return lines


def _change_line(change: FieldChange) -> tuple[str, str]:
    if is_multiline_change(change):
        return "~", f"{change.field}:"
    before = format_value(change.before, change.sensitive)
    after = format_value(change.after, change.sensitive)
    if change.before is None and change.after is not None:
        return "+", f"{change.field} = {after}"
    if (
        change.after is None
        and change.before is not None
        and change.field.startswith(("nodes.", "edges"))
    ):
        return "-", f"{change.field} = {before}"
    return "~", f"{change.field}: {before} → {after}"


def _change_body(change: FieldChange) -> list[tuple[str, str]]:
    """The lines under a change's own line: a multi-line string's line diff, else nothing."""
    if not is_multiline_change(change):
        return []
    assert isinstance(change.before, str)
    assert isinstance(change.after, str)
    return line_diff(change.before, change.after)


# One resource in an ownership section: its "Kind/name" and what is said about it.
Entry = tuple[str, str]


def ownership_sections(plan: Plan) -> list[tuple[str, list[Entry]]]:
    """What the plan says about ownership: adoptions, then undeclared live resources by owner."""
    sections: list[tuple[str, list[Entry]]] = []
    this = plan.set_name
    if plan.adopt:
        first = "" if plan.has_record else f" (set {this!r} has no ownership record yet)"
        sections.append(
            (
                f"Set {this!r} takes ownership of (live, declared, owned by no set; apply "
                f"records it and deletes nothing for it){first}:",
                [(f"{a.kind}/{a.name}", f"(id {a.live_id})") for a in plan.adopt],
            )
        )

    def line(item: Unmanaged) -> Entry:
        text = f"(id {item.live_id})"
        if item.held_by:
            text += f", kept: still used by {', '.join(item.held_by)}"
        if item.owners and item.owners != (this,):
            text += f", set {', '.join(item.owners)}"
        return f"{item.kind}/{item.name}", text

    mine = [u for u in plan.unmanaged if u.owners == (this,)]
    others = [u for u in plan.unmanaged if u.owners and u.owners != (this,)]
    nobody = [u for u in plan.unmanaged if not u.owners]
    if mine:
        hint = "" if plan.prune or plan.prune_unmanaged else "; --prune deletes them"
        sections.append(
            (f"Owned by set {this!r}, no longer declared{hint}:", [line(u) for u in mine])
        )
    if others:
        sections.append(
            (
                "Owned by other sets (never deleted by this one):",
                [line(u) for u in others],
            )
        )
    if nobody:
        hint = "" if plan.prune_unmanaged else "; --prune-unmanaged deletes them"
        sections.append(
            (f"Unmanaged (live, owned by no set{hint}):", [line(u) for u in nobody])
        )
    return sections


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    if not counts:
        if plan.adopt:
            return (
                "No changes. Live state matches the manifests; apply records ownership of "
                f"{len(plan.adopt)} resource(s) for set {plan.set_name!r}."
            )
        return "No changes. Live state matches the manifests."
    labels = [
        ("create", "to create"),
        ("update", "to update"),
        ("replace-graph", "graph(s) to replace"),
        ("deploy", "to deploy"),
        ("promote", "to promote"),
        ("rollback", "to roll back"),
        ("stop", "extra deployment(s) to stop"),
        ("delete", "to delete"),
    ]
    parts = [f"{counts[verb]} {label}" for verb, label in labels if counts.get(verb)]
    return "Plan: " + ", ".join(parts) + "."


def _action_header(action: Action) -> str:
    return f"{VERB_SYMBOLS[action.verb]} {action.summary}"


def render_plan(
    plan: Plan,
    fmt: Format = "text",
    *,
    color: bool = False,
    json_lines: bool = False,
    context: PlanContext | None = None,
) -> str:
    """The plan in ``fmt``; ``json_lines`` puts a JSON document on one line (for apply).

    ``context`` (server and organization) heads the Markdown form, for PR reviewers.
    """
    if fmt == "json":
        return redact(_json(plan_to_json(plan), json_lines))
    if fmt == "markdown":
        return redact(_plan_markdown(plan, context))
    return redact(_plan_text(plan, color))


def _plan_text(plan: Plan, color: bool) -> str:
    lines: list[str] = []
    if plan.actions:
        lines.append("kaizenctl will perform these actions:")
        lines.append("")
        for action in plan.actions:
            symbol = VERB_SYMBOLS[action.verb]
            header = "  " + _action_header(action)
            if action.source:
                header += f"   ({action.source})"
            lines.append(_style(header, symbol, color))
            if _is_production(action) and action.verb != "delete":
                lines.append(_style(f"      ! {PRODUCTION_NOTE}", "~", color))
            for change in action.changes:
                change_symbol, text = _change_line(change)
                lines.append(_style(f"      {change_symbol} {text}", change_symbol, color))
                for mark, line in _change_body(change):
                    lines.append(_style(f"          {mark} {line}".rstrip(), mark, color))
            for warning in action.warnings:
                lines.append(_style(f"      ! {warning}", "~", color))
        lines.append("")
    for heading, items in ownership_sections(plan):
        lines.append(heading)
        lines.extend(f"  {ref} {text}" for ref, text in items)
        lines.append("")
    if plan.targeting_warning:
        lines.append(_style(f"Warning: {plan.targeting_warning}", "~", color))
    for note in plan.notes:
        lines.append(_style(f"Warning: {note}", "~", color))
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _change_json(change: FieldChange) -> dict[str, Any]:
    return {
        "field": change.field,
        "before": MASK if change.sensitive else change.before,
        "after": MASK if change.sensitive else change.after,
        "sensitive": change.sensitive,
    }


def _live_json(item: Unmanaged) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "name": item.name,
        "id": item.live_id,
        "owners": list(item.owners),
        "held_by": list(item.held_by),
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The documented, versioned JSON form of a plan (README: "JSON output")."""
    return {
        "format_version": JSON_FORMAT_VERSION,
        "type": "plan",
        "has_changes": plan.has_changes,
        "summary": plan.counts(),
        "actions": [
            {
                "id": action.id,
                "verb": action.verb,
                "kind": action.kind,
                "name": action.name,
                "summary": action.summary,
                "changes": [_change_json(c) for c in action.changes],
                "depends_on": list(action.depends_on),
                "warnings": list(action.warnings),
                "requires_flag": action.requires_flag,
                "source": action.source,
            }
            for action in plan.actions
        ],
        "unmanaged": [_live_json(u) for u in plan.unmanaged],
        "warnings": list(plan.warnings),
        "drift": drift_to_json(plan),
        "set": plan.set_name,
        "adopt": [{"kind": a.kind, "name": a.name, "id": a.live_id} for a in plan.adopt],
    }


# How each verb says a live resource differs from Git (the drift report's "how").
DRIFT_KINDS: dict[str, str] = {
    "create": "missing",  # in Git, not live
    "update": "changed",
    "replace-graph": "graph-changed",
    "deploy": "deployment-differs",
    "promote": "deployment-differs",
    "rollback": "deployment-differs",
    "delete": "not-in-git",  # only with --prune: live, in no manifest
    "stop": "extra-deployment",  # more than one active deployment where one belongs
}


def drift_to_json(plan: Plan) -> dict[str, Any]:
    """The plan read as a drift report, by resource: what differs from Git, field by field.

    For a nightly `plan --detailed-exitcode --format json`: ``drifted`` says whether to
    alert, ``resources`` which resources and fields differ (live value vs. Git value,
    sensitive ones masked), ``unmanaged`` what is live but in no manifest.
    """
    by_ref: dict[str, dict[str, Any]] = {}
    for action in plan.actions:
        entry = by_ref.setdefault(
            action.ref,
            {"kind": action.kind, "name": action.name, "how": [], "actions": [], "fields": []},
        )
        how = DRIFT_KINDS[action.verb]
        if how not in entry["how"]:
            entry["how"].append(how)
        entry["actions"].append(action.id)
        for change in action.changes:
            entry["fields"].append(
                {
                    "field": change.field,
                    "live": MASK if change.sensitive else change.before,
                    "git": MASK if change.sensitive else change.after,
                    "sensitive": change.sensitive,
                }
            )
    return {
        "drifted": plan.has_changes,
        "resources": list(by_ref.values()),
        "unmanaged": [_live_json(u) for u in plan.unmanaged],
    }


MARKDOWN_FIELDS_PER_ACTION = 8


def _field_names(action: Action) -> str:
    """The fields an action changes, for one Markdown line: which fields drifted."""
    names = list(dict.fromkeys(change.field for change in action.changes))
    if not names:
        return ""
    shown = ", ".join(_code(name) for name in names[:MARKDOWN_FIELDS_PER_ACTION])
    more = len(names) - MARKDOWN_FIELDS_PER_ACTION
    return f" — {shown}" + (f" and {more} more" if more > 0 else "")


def _mermaid(action: Action) -> list[str]:
    drawing = action.drawing
    if drawing is None:
        return []
    lines = ["```mermaid", "flowchart LR"]
    classes = {"added": "added", "removed": "removed", "changed": "changed"}
    # Mermaid ids must be plain words; node ids may hold any character, so number them
    # (two ids that differ only in punctuation, `a-b` and `a_b`, stay two nodes).
    mermaid_ids: dict[str, str] = {}

    def mermaid_id(node_id: str) -> str:
        return mermaid_ids.setdefault(node_id, f"n{len(mermaid_ids)}")

    for node in drawing.nodes:
        agent = node.agent
        was = node.agent_before
        if was and was != agent:
            agent = f"{was} → {agent or '(none)'}"
        label = _mermaid_text(node.id) + (f"<br/>{_mermaid_text(agent)}" if agent else "")
        mark = node.mark
        prefix = {"added": "+ ", "removed": "- ", "changed": "~ "}.get(mark, "")
        css = f":::{classes[mark]}" if mark in classes else ""
        lines.append(f'    {mermaid_id(node.id)}["{prefix}{label}"]{css}')
    link_styles = []
    for index, edge in enumerate(drawing.edges):
        arrow = {"added": "==>", "removed": "-.->"}.get(edge.mark, "-->")
        words = [w for w in (edge.handles, edge.mark) if w and w != "same"]
        label = f'|"{_mermaid_text(" ".join(words))}"|' if words else ""
        source, target = mermaid_id(edge.source), mermaid_id(edge.target)
        lines.append(f"    {source} {arrow}{label} {target}")
        if edge.mark in ("added", "removed"):
            colour = "#2da44e" if edge.mark == "added" else "#cf222e"
            link_styles.append(f"    linkStyle {index} stroke:{colour}")
    lines.extend(link_styles)
    lines.append("    classDef added fill:#dafbe1,stroke:#2da44e")
    lines.append("    classDef removed fill:#ffebe9,stroke:#cf222e,stroke-dasharray: 4")
    lines.append("    classDef changed fill:#fff8c5,stroke:#bf8700")
    lines.append("```")
    return lines


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: quotes and angle brackets as entities."""
    return _escape(text).replace('"', "#quot;")


@dataclass(frozen=True)
class PlanContext:
    """Where a plan was made, for a reader who sees only the rendered comment."""

    server: str
    organization: str | None = None


def _is_production(action: Action) -> bool:
    payload = action.payload
    environment = payload.environment if isinstance(payload, SlotPayload | AgentSlot) else None
    return action.kind == "Deployment" and (
        environment == PRODUCTION or action.name.endswith("/" + PRODUCTION)
    )


def _code(text: str) -> str:
    """Inline code that survives any backtick in ``text`` (CommonMark: a longer fence)."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_action(action: Action) -> str:
    # The symbol goes inside the code span: a list item starting with `+ ` or `- ` is a
    # nested list to GitHub, which would drop the symbol.
    return _code(f"{VERB_SYMBOLS[action.verb]} {action.summary}")


@dataclass
class _MarkdownPart:
    """A whole block of the comment; trimming drops whole parts, never half of one."""

    text: str
    # What leaving this part out loses, in the trimmed comment's note ("change lines").
    counts_as: str | None = None


def _plan_markdown(plan: Plan, context: PlanContext | None) -> str:
    head = ["### kaizenctl plan", ""]
    if context is not None:
        where = f"Planned against {_code(context.server)}"
        if context.organization:
            where += f", organization {_code(context.organization)}"
        head += [where + ".", ""]
    head += [f"**{summary_line(plan)}**", ""]
    if plan.targeting_warning:
        head += [f"> :warning: {_escape(plan.targeting_warning)}", ""]
    parts: list[_MarkdownPart] = []

    def section(title: str, items: list[str], counts_as: str) -> None:
        if not items:
            return
        parts.append(_MarkdownPart(f"#### {title}\n"))
        parts.extend(_MarkdownPart(item + "\n", counts_as) for item in items)
        parts.append(_MarkdownPart("\n"))

    deletes = [a for a in plan.actions if a.verb == "delete"]
    section(
        f":warning: {len(deletes)} to delete", [f"- {_md_action(a)}" for a in deletes], "deletes"
    )
    warned = [(a, w) for a in plan.actions for w in a.warnings]
    section(
        "Needs attention",
        [f"- {_escape(note)}" for note in plan.notes]
        + [f"- {_md_action(a)}: {_escape(w)}" for a, w in warned],
        "warnings",
    )
    production = [a for a in plan.actions if a.verb != "delete" and _is_production(a)]
    section(
        f":rotating_light: Production ({len(production)})",
        [f"- {_md_action(a)}{_field_names(a)}" for a in production],
        "production changes",
    )
    others = [a for a in plan.actions if a.verb != "delete" and not _is_production(a)]
    section("Changes", [f"- {_md_action(a)}{_field_names(a)}" for a in others], "change lines")
    detailed = [a for a in plan.actions if a.changes or a.drawing is not None]
    for action in detailed[:MARKDOWN_DETAILED_ACTIONS]:
        block = [f"<details><summary>{_escape(_action_header(action))}</summary>", ""]
        if action.changes:
            block.append(_fence("diff", _markdown_diff(action)))
        block.extend(_mermaid(action))
        block += ["", "</details>", "", ""]
        parts.append(_MarkdownPart("\n".join(block), "detail sections"))
    left_out_details = len(detailed) - MARKDOWN_DETAILED_ACTIONS
    if left_out_details > 0:
        parts.append(
            _MarkdownPart(
                f"_…details of {left_out_details} more actions left out; "
                "run `kaizenctl plan` for the full plan._\n\n"
            )
        )
    for heading, entries in ownership_sections(plan):
        items = "".join(f"- {_code(ref)} {_escape(text)}\n" for ref, text in entries)
        parts.append(
            _MarkdownPart(
                f"<details><summary>{_escape(heading)} ({len(entries)})"
                f"</summary>\n\n{items}\n</details>\n",
                "unmanaged lists",
            )
        )
    return _fit("\n".join(head) + "\n", parts)


def _markdown_diff(action: Action) -> list[str]:
    lines = []
    for change in action.changes:
        symbol, text = _change_line(change)
        lines.append(f"{'!' if symbol == '~' else symbol} {text}")
        for mark, line in _change_body(change):
            lines.append(f"{'!' if mark == '~' else mark}   {line}".rstrip())
    return lines


def _fence(language: str, lines: list[str]) -> str:
    """A fenced block that no line inside can close early."""
    fence = "```"
    while any(line.lstrip().startswith(fence) for line in lines):
        fence += "`"
    return "\n".join([fence + language, *lines, fence])


def _fit(head: str, parts: list[_MarkdownPart]) -> str:
    """``head`` and as many whole parts as fit under MARKDOWN_LIMIT, saying what was left out."""
    text = head + "".join(part.text for part in parts)
    if len(text) <= MARKDOWN_LIMIT:
        return text
    budget = MARKDOWN_LIMIT - len(head) - 500  # room for the note below
    kept: list[str] = []
    left_out: dict[str, int] = {}
    for part in parts:
        if not left_out and len(part.text) <= budget:
            kept.append(part.text)
            budget -= len(part.text)
        elif part.counts_as is not None:
            left_out[part.counts_as] = left_out.get(part.counts_as, 0) + 1
    what = ", ".join(f"{count} {label}" for label, count in left_out.items())
    return (
        head
        + "".join(kept)
        + f"\n\n_…plan trimmed to fit a comment: {what} left out; "
        "run `kaizenctl plan` for all of it._\n"
    )


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


# The JSON key of each outcome list ("interrupted" alone is the top-level flag).
_RESULT_KEYS = {
    "done": "done",
    "awaiting-approval": "awaiting_approval",
    "rejected": "rejected",
    "failed": "failed",
    "skipped": "skipped",
    "interrupted": "interrupted_actions",
    "not-started": "not_started",
}


def _json(document: dict[str, Any], json_lines: bool) -> str:
    if json_lines:
        return json.dumps(document, default=str, separators=(",", ":")) + "\n"
    return json.dumps(document, indent=2, default=str) + "\n"


def render_apply(
    result: ApplyResult, fmt: Format = "text", *, color: bool = False, json_lines: bool = False
) -> str:
    groups = {status: result.with_status(status) for status in OUTCOME_STATUSES}
    if fmt == "json":
        data = {
            "format_version": JSON_FORMAT_VERSION,
            "type": "apply-result",
            "ok": result.ok,
            "interrupted": result.interrupted,
            **{
                _RESULT_KEYS[status]: [o.model_dump() for o in outcomes]
                for status, outcomes in groups.items()
            },
        }
        return redact(_json(data, json_lines))
    lines: list[str] = []
    titles = {
        "done": "Done",
        "awaiting-approval": "Awaiting approval on the platform (neither done nor failed; "
        "apply again once it is approved)",
        "rejected": "Rejected by the platform's approvers",
        "failed": "Failed",
        "skipped": "Skipped (a dependency failed)",
        "interrupted": "Interrupted while running (may or may not have taken effect)",
        "not-started": "Never started",
    }
    for status, outcomes in groups.items():
        if not outcomes:
            continue
        heading = "#### " if fmt == "markdown" else ""
        bullet = "- " if fmt == "markdown" else "  "
        lines.append(f"{heading}{titles[status]} ({len(outcomes)}):")
        for outcome in outcomes:
            text = f"{bullet}{outcome.summary}"
            if outcome.message:
                text += f": {outcome.message}"
            symbol = {"failed": "-", "rejected": "-", "done": "+"}.get(status, "~")
            lines.append(_style(text, symbol, color))
    counts = {status: len(outcomes) for status, outcomes in groups.items()}
    if result.interrupted:
        lines.append("Apply was interrupted; run it again to converge.")
    if result.ok:
        state = "complete"
    elif result.awaiting_approval:
        state = "awaiting approval"
    else:
        state = "incomplete"
    lines.append(
        f"Apply {state}: {counts['done']} done, "
        + (
            f"{counts['awaiting-approval']} awaiting approval, "
            if counts["awaiting-approval"]
            else ""
        )
        + (f"{counts['rejected']} rejected, " if counts["rejected"] else "")
        + f"{counts['failed']} failed, {counts['skipped']} skipped, "
        + (f"{counts['interrupted']} interrupted, " if counts["interrupted"] else "")
        + f"{counts['not-started']} never started."
    )
    return redact("\n".join(lines) + "\n")
