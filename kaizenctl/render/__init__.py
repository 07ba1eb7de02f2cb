"""One renderer for all output: text (Terraform-like), JSON (versioned), Markdown (PR comments).

Nothing in the core prints; the CLI picks a format and prints what this returns.
Every string leaves through ``redact`` and sensitive values are masked.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from kaizenctl.reconcile.apply import ApplyResult
from kaizenctl.reconcile.plan import VERB_SYMBOLS, Action, FieldChange, Plan
from kaizenctl.redact import MASK, redact

Format = Literal["text", "json", "markdown"]
JSON_FORMAT_VERSION = 1
MAX_VALUE_WIDTH = 100
# GitHub refuses comments over 65,536 characters; leave room for the trailer.
MARKDOWN_LIMIT = 60_000
MARKDOWN_DETAILED_ACTIONS = 200

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
        text = json.dumps(first + " …") + f" ({len(value.splitlines())} lines)"
    else:
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _change_line(change: FieldChange) -> tuple[str, str]:
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


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    if not counts:
        return "No changes. Live state matches the manifests."
    labels = [
        ("create", "to create"),
        ("update", "to update"),
        ("replace-graph", "graph(s) to replace"),
        ("deploy", "to deploy"),
        ("promote", "to promote"),
        ("rollback", "to roll back"),
        ("delete", "to delete"),
    ]
    parts = [f"{counts[verb]} {label}" for verb, label in labels if counts.get(verb)]
    return "Plan: " + ", ".join(parts) + "."


def _action_header(action: Action) -> str:
    return f"{VERB_SYMBOLS[action.verb]} {action.summary}"


def render_plan(
    plan: Plan, fmt: Format = "text", *, color: bool = False, json_lines: bool = False
) -> str:
    """The plan in ``fmt``; ``json_lines`` puts a JSON document on one line (for apply)."""
    if fmt == "json":
        return redact(_json(plan_to_json(plan), json_lines))
    if fmt == "markdown":
        return redact(_plan_markdown(plan))
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
            for change in action.changes:
                change_symbol, text = _change_line(change)
                lines.append(_style(f"      {change_symbol} {text}", change_symbol, color))
            for warning in action.warnings:
                lines.append(_style(f"      ! {warning}", "~", color))
        lines.append("")
    if plan.unmanaged:
        hint = "" if plan.prune else "; --prune deletes them"
        lines.append(f"Unmanaged (live, in no manifest{hint}):")
        for item in plan.unmanaged:
            lines.append(f"  {item.kind}/{item.name} (id {item.live_id})")
        lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _change_json(change: FieldChange) -> dict[str, Any]:
    return {
        "field": change.field,
        "before": MASK if change.sensitive else change.before,
        "after": MASK if change.sensitive else change.after,
        "sensitive": change.sensitive,
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
        "unmanaged": [{"kind": u.kind, "name": u.name, "id": u.live_id} for u in plan.unmanaged],
        "warnings": list(plan.warnings),
        "drift": drift_to_json(plan),
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
        "unmanaged": [{"kind": u.kind, "name": u.name, "id": u.live_id} for u in plan.unmanaged],
    }


MARKDOWN_FIELDS_PER_ACTION = 8


def _field_names(action: Action) -> str:
    """The fields an action changes, for one Markdown line: which fields drifted."""
    names = list(dict.fromkeys(change.field for change in action.changes))
    if not names:
        return ""
    shown = ", ".join(f"`{_escape(name)}`" for name in names[:MARKDOWN_FIELDS_PER_ACTION])
    more = len(names) - MARKDOWN_FIELDS_PER_ACTION
    return f" — {shown}" + (f" and {more} more" if more > 0 else "")


def _mermaid(action: Action) -> list[str]:
    drawing = action.payload.get("graph_diff")
    if not drawing:
        return []
    lines = ["```mermaid", "flowchart LR"]
    classes = {"added": "added", "removed": "removed", "changed": "changed"}
    for node in drawing["nodes"]:
        label = node["id"] + (f"<br/>{node['agent']}" if node.get("agent") else "")
        mark = node["mark"]
        prefix = {"added": "+ ", "removed": "- ", "changed": "~ "}.get(mark, "")
        css = f":::{classes[mark]}" if mark in classes else ""
        lines.append(f'    {_mermaid_id(node["id"])}["{prefix}{label}"]{css}')
    link_styles = []
    for index, edge in enumerate(drawing["edges"]):
        arrow = {"added": "==>", "removed": "-.->"}.get(edge["mark"], "-->")
        words = [w for w in (edge.get("handles"), edge["mark"]) if w and w != "same"]
        label = f"|{_escape(' '.join(words))}|" if words else ""
        lines.append(
            f"    {_mermaid_id(edge['source'])} {arrow}{label} {_mermaid_id(edge['target'])}"
        )
        if edge["mark"] in ("added", "removed"):
            colour = "#2da44e" if edge["mark"] == "added" else "#cf222e"
            link_styles.append(f"    linkStyle {index} stroke:{colour}")
    lines.extend(link_styles)
    lines.append("    classDef added fill:#dafbe1,stroke:#2da44e")
    lines.append("    classDef removed fill:#ffebe9,stroke:#cf222e,stroke-dasharray: 4")
    lines.append("    classDef changed fill:#fff8c5,stroke:#bf8700")
    lines.append("```")
    return lines


def _mermaid_id(node_id: str) -> str:
    # Mermaid ids cannot hold dots or dashes safely; node ids can.
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in node_id)


def _plan_markdown(plan: Plan) -> str:
    lines = ["### kaizenctl plan", "", f"**{summary_line(plan)}**", ""]
    deletes = [a for a in plan.actions if a.verb == "delete"]
    if deletes:
        lines.append(f"#### :warning: {len(deletes)} to delete")
        lines.extend(f"- `{a.summary}`" for a in deletes)
        lines.append("")
    warned = [a for a in plan.actions if a.warnings]
    if warned:
        lines.append("#### Needs attention")
        lines.extend(f"- `{a.summary}`: {w}" for a in warned for w in a.warnings)
        lines.append("")
    others = [a for a in plan.actions if a.verb != "delete"]
    if others:
        lines.append("#### Changes")
        lines.extend(f"- {VERB_SYMBOLS[a.verb]} `{a.summary}`{_field_names(a)}" for a in others)
        lines.append("")
    detailed = [a for a in plan.actions if a.changes or a.payload.get("graph_diff")]
    for action in detailed[:MARKDOWN_DETAILED_ACTIONS]:
        lines.append(f"<details><summary>{_escape(_action_header(action))}</summary>")
        lines.append("")
        if action.changes:
            lines.append("```diff")
            for change in action.changes:
                symbol, text = _change_line(change)
                lines.append(f"{'!' if symbol == '~' else symbol} {text}")
            lines.append("```")
        lines.extend(_mermaid(action))
        lines.append("")
        lines.append("</details>")
        lines.append("")
    if len(detailed) > MARKDOWN_DETAILED_ACTIONS:
        lines.append(
            f"_…details of {len(detailed) - MARKDOWN_DETAILED_ACTIONS} more actions left out; "
            "run `kaizenctl plan` for the full plan._"
        )
    if plan.unmanaged:
        lines.append(
            f"<details><summary>Unmanaged live resources ({len(plan.unmanaged)})</summary>"
        )
        lines.append("")
        lines.extend(f"- `{u.kind}/{u.name}`" for u in plan.unmanaged)
        lines.append("")
        lines.append("</details>")
    text = "\n".join(lines) + "\n"
    if len(text) > MARKDOWN_LIMIT:
        cut = text.rfind("\n<details>", 0, MARKDOWN_LIMIT)
        text = (
            text[: cut if cut > 0 else MARKDOWN_LIMIT]
            + "\n\n_…plan trimmed to fit a comment; run `kaizenctl plan` for all of it._\n"
        )
    return text


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


# The JSON key of each outcome list ("interrupted" alone is the top-level flag).
_RESULT_KEYS = {
    "done": "done",
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
    groups = {
        status: result.with_status(status)
        for status in ("done", "failed", "skipped", "interrupted", "not-started")
    }
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
            lines.append(_style(text, {"failed": "-", "done": "+"}.get(status, "~"), color))
    counts = {status: len(outcomes) for status, outcomes in groups.items()}
    if result.interrupted:
        lines.append("Apply was interrupted; run it again to converge.")
    lines.append(
        f"Apply {'complete' if result.ok else 'incomplete'}: {counts['done']} done, "
        f"{counts['failed']} failed, {counts['skipped']} skipped, "
        + (f"{counts['interrupted']} interrupted, " if counts["interrupted"] else "")
        + f"{counts['not-started']} never started."
    )
    return redact("\n".join(lines) + "\n")
