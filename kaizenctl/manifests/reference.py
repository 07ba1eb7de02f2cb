"""The manifest reference (docs/manifest-reference.md), generated from the models and the registry.

``python -m kaizenctl.manifests.reference [FILE]`` writes it (``docs/manifest-reference.md``
by default); ``--check`` only reports whether the file is current, and a test
fails when it is not. Every kind in ``kaizenctl.kinds.KINDS`` gets a section,
every field of its model (nested ones as ``nodes[].id``) a row: type, whether it
is required, its default, its allowed values, and one column per API dialect
saying whether a server of that dialect can hold it (``DIALECTS``). A new kind,
field or dialect shows up here without anyone writing a line of Markdown.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from kaizenctl.api.capabilities import CONTRACT_CAPABILITIES, STUDIO_CAPABILITIES, Capabilities
from kaizenctl.kinds import KINDS, KindInfo, create_order
from kaizenctl.manifests.models import API_VERSION, NAME_PATTERN, NODE_ID_PATTERN, Metadata

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "docs" / "manifest-reference.md"

# Regular expressions are exact but unreadable in a table; say what they mean.
PATTERN_MEANINGS = {
    NAME_PATTERN: "lowercase letters, digits and `-`, starting and ending with a letter or digit",
    NODE_ID_PATTERN: "1-64 of `A-Z a-z 0-9 _ . -`",
}


@dataclass(frozen=True)
class Dialect:
    """An API dialect kaizenctl speaks, and which manifest fields its servers can hold."""

    name: str
    # (kind, field path as in the table, e.g. "nodes[].agent") -> can a server of it hold it.
    accepts: Callable[[str, str], bool]


def _table_holds(capabilities: Capabilities) -> Callable[[str, str], bool]:
    """What a dialect's capability table lets its servers hold (``kaizenctl.api.capabilities``)."""

    def holds(kind: str, path: str) -> bool:
        if kind not in capabilities.kinds or kind in capabilities.refused_kinds:
            return False
        return not any(
            limit.kind == kind and limit.path == path and limit.refused_if_set
            for limit in capabilities.limits
        )

    return holds


def _contract_holds(kind: str, path: str) -> bool:
    # A CONTRACT server deploys pipelines only: a Gateway, or a Deployment of an agent onto
    # a gateway, is refused at plan by the rollout planner, not by the table.
    if kind == "Gateway":
        return False
    if kind == "Deployment" and path in ("agent", "gateway"):
        return False
    return _table_holds(CONTRACT_CAPABILITIES)(kind, path)


def _studio_holds(kind: str, path: str) -> bool:
    # The shipped backend deploys agents onto gateways only: a pipeline deployment is refused.
    if kind == "Deployment" and path == "pipeline":
        return False
    return _table_holds(STUDIO_CAPABILITIES)(kind, path)


# One column each, in this order. A dialect that cannot hold a field refuses it at plan.
DIALECTS: tuple[Dialect, ...] = (
    Dialect("contract", _contract_holds),
    Dialect("studio", _studio_holds),
)


@dataclass(frozen=True)
class FieldRow:
    path: str
    type: str
    required: bool
    default: str
    allowed: str
    notes: str


def _resolve(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _non_null(schema: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The alternatives of a field's schema other than null, and whether null is one."""
    branches = schema.get("anyOf", [schema])
    kept = [branch for branch in branches if branch.get("type") != "null"]
    return kept, len(kept) < len(branches)


def _type_name(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    if "const" in schema:
        return _type_name({"type": schema.get("type", "string")}, definitions)
    if "$ref" in schema:
        return "mapping"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        if "$ref" in items:
            return "list of mappings"
        return f"list of {_type_name(items, definitions)}s" if items else "list"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and values.get("type"):
            return f"mapping of {values['type']}s"
        return "mapping"
    if kind is None:
        return "any"
    return str(kind)


def _allowed(schema: dict[str, Any]) -> list[str]:
    if "const" in schema:
        return [f"`{json.dumps(schema['const'])}`"]
    if "enum" in schema:
        return [", ".join(f"`{value}`" for value in schema["enum"])]
    parts = []
    if "minimum" in schema and "maximum" in schema:
        parts.append(f"{schema['minimum']} to {schema['maximum']}")
    elif "minimum" in schema:
        parts.append(f"≥ {schema['minimum']}")
    elif "maximum" in schema:
        parts.append(f"≤ {schema['maximum']}")
    if schema.get("minLength") == 1:
        parts.append("not empty")
    elif "minLength" in schema:
        parts.append(f"at least {schema['minLength']} characters")
    if "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} characters")
    if schema.get("minItems") == 1:
        parts.append("at least one")
    if "pattern" in schema:
        parts.append(PATTERN_MEANINGS.get(schema["pattern"], f"matches `{schema['pattern']}`"))
    return parts


def _describe(schema: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, str]:
    """(type, allowed values) of a field's JSON Schema."""
    branches, nullable = _non_null(schema)
    types_ = list(dict.fromkeys(_type_name(branch, definitions) for branch in branches))
    allowed = [part for branch in branches for part in _allowed(branch)]
    if len(branches) > 1:
        allowed = [" or ".join(allowed)] if allowed else []
    type_text = " or ".join(types_) + (" or null" if nullable else "")
    return type_text, "; ".join(allowed)


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally or as list items), and whether in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is list and arguments:
        model, _ = _nested_model(arguments[0])
        return model, model is not None
    if origin in (typing.Union, types.UnionType):
        for argument in arguments:
            model, in_list = _nested_model(argument)
            if model is not None:
                return model, in_list
    return None, False


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value)}`"


def _notes(info: KindInfo | None, path: str, field: FieldInfo) -> str:
    notes = [field.description] if field.description else []
    if info is not None and path in info.set_fields:
        notes.append("A set: order means nothing, duplicates are refused.")
    return " ".join(notes)


def field_rows(
    model: type[BaseModel], info: KindInfo | None = None, prefix: str = ""
) -> Iterator[FieldRow]:
    """One row per field of ``model``, nested models flattened (``nodes[].id``)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.get("$defs", {})
    properties = schema["properties"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        type_text, allowed = _describe(_resolve(properties[key], definitions), definitions)
        nested, in_list = _nested_model(field.annotation)
        notes = _notes(info, path, field)
        yield FieldRow(path, type_text, field.is_required(), _default(field), allowed, notes)
        if nested is not None:
            yield from field_rows(nested, info, f"{path}[]." if in_list else f"{path}.")


def _table(rows: list[FieldRow], kind: str) -> list[str]:
    header = ["Field", "Type", "Required", "Default", "Allowed values", "Notes"]
    header += [f"`{dialect.name}` dialect" for dialect in DIALECTS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            f"`{row.path}`",
            row.type,
            "yes" if row.required else "no",
            row.default,
            row.allowed,
            row.notes,
        ]
        cells += ["yes" if dialect.accepts(kind, row.path) else "no" for dialect in DIALECTS]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def _kind_section(info: KindInfo) -> list[str]:
    identity = (
        f"its {info.identity_label} (`metadata.name` labels it)"
        if info.identity_label
        else "`metadata.name`"
    )
    references = (
        ", ".join(f"{reference.kind} (by its `metadata.name`)" for reference in info.references)
        or "nothing"
    )
    lines = [
        f"## {info.kind}",
        "",
        f"- Identity: {identity}.",
        f"- Refers to: {references}.",
        "",
    ]
    lines += _table(list(field_rows(info.spec_model, info, "")), info.kind)
    lines += [""]
    return lines


def render_reference() -> str:
    """The whole reference, as written to docs/manifest-reference.md."""
    kinds = ", ".join(f"`{kind}`" for kind in KINDS)
    lines = [
        "# Manifest reference",
        "",
        "<!-- Generated by `python -m kaizenctl.manifests.reference` from",
        "kaizenctl/manifests/models.py and kaizenctl/kinds.py; do not edit by hand. -->",
        "",
        "Every field of every kind, generated from the models kaizenctl validates with",
        "(a test fails when this page and the models disagree). What the fields mean and",
        "how plan and apply treat them is in [manifests.md](manifests.md).",
        "",
        "- *Required*: `validate` reports a missing required field.",
        "- *Default*: what an optional field left out means. A manifest is the whole",
        "  desired state of its resource, so removing a line resets that field to this.",
        "- One column per API dialect: whether a server of that dialect can hold the",
        "  field. Plan refuses a field the server cannot hold, naming file and line.",
        "",
        "## Every document",
        "",
        "Each YAML document (files may hold several, separated by `---`) has `apiVersion`,",
        f"`kind`, `metadata` and `spec`. `kind` is one of {kinds}.",
        f"Order between kinds when applying: {' → '.join(create_order())} (each after",
        "the kinds it refers to); deletes run the other way round.",
        "",
    ]
    top = [
        FieldRow("apiVersion", "string", True, "", f"`{API_VERSION}`", ""),
        FieldRow("kind", "string", True, "", kinds, ""),
    ]
    top += list(field_rows(Metadata, None, "metadata."))
    top.append(FieldRow("spec", "mapping", True, "", "", "the kind's fields, below"))
    lines += _table(top, "")
    lines.append("")
    for kind in create_order():
        lines += _kind_section(KINDS[kind])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    arguments = [argument for argument in argv if argument != "--check"]
    path = Path(arguments[0]) if arguments else DEFAULT_FILE
    content = render_reference()
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current == content:
        print(f"{path} is current")
        return 0
    if check:
        print(f"{path} is stale; run python -m kaizenctl.manifests.reference")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
