"""JSON Schemas of the manifest kinds, generated from the models (never written by hand).

``python -m kaizenctl.manifests.schema [FOLDER]`` writes ``<kind>.json`` per kind
and ``manifest.json`` (any kind, chosen by ``kind``) into FOLDER,
``kaizenctl/schemas/`` by default, which the wheel carries as package data;
``--check`` only reports whether the files there are current. ``kaizenctl
schema`` prints them (and the hand-kept output schemas in ``output/`` beside them).
Editors use them through yaml-language-server (see docs/editors.md). The
schemas describe one document's shape; set-wide checks (references,
duplicates) need ``kaizenctl validate``.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from kaizenctl.kinds import KINDS, KindInfo
from kaizenctl.manifests.models import API_VERSION, Metadata

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URI = "https://kaizen.io/schemas/v1/"
DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "schemas"
# The versioned JSON outputs' schemas (written by hand, tested against real output).
OUTPUT_SCHEMAS = {
    "plan": "output/plan.v1.json",
    "apply-result": "output/apply-result.v1.json",
    "error": "output/error.v1.json",
}


def _document(kind: str, spec_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": {"$ref": "#/$defs/Metadata"},
            "spec": {"$ref": spec_ref},
        },
    }


def _spec_definitions(info: KindInfo) -> tuple[str, dict[str, Any]]:
    """(name of the spec's definition, every definition it needs)."""
    spec = info.spec_model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Any] = spec.pop("$defs", {})
    name = str(spec.get("title", info.spec_model.__name__))
    definitions[name] = spec
    return name, definitions


def _metadata_definitions() -> dict[str, Any]:
    metadata = Metadata.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Any] = metadata.pop("$defs", {})
    definitions["Metadata"] = metadata
    return definitions


def kind_schema(info: KindInfo) -> dict[str, Any]:
    """The JSON Schema of one whole document of ``info.kind``."""
    spec_name, definitions = _spec_definitions(info)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}{info.kind.lower()}.json",
        "title": f"Kaizen Studio {info.kind} manifest",
        **_document(info.kind, f"#/$defs/{spec_name}"),
        "$defs": {**_metadata_definitions(), **definitions},
    }


def manifest_schema() -> dict[str, Any]:
    """One schema for a document of any kind, so a file mixing kinds gets help too."""
    definitions = _metadata_definitions()
    branches: list[dict[str, Any]] = []
    for info in KINDS.values():
        spec_name, spec_definitions = _spec_definitions(info)
        definitions.update(spec_definitions)
        definitions[f"{info.kind}Manifest"] = _document(info.kind, f"#/$defs/{spec_name}")
        branches.append(
            {
                "if": {"properties": {"kind": {"const": info.kind}}, "required": ["kind"]},
                "then": {"$ref": f"#/$defs/{info.kind}Manifest"},
            }
        )
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}manifest.json",
        "title": "Kaizen Studio manifest (any kind)",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"kind": {"enum": list(KINDS)}},
        "allOf": branches,
        "$defs": definitions,
    }


def generated_files() -> dict[str, str]:
    """File name -> content of every schema file, exactly as written to disk."""
    schemas = {f"{info.kind.lower()}.json": kind_schema(info) for info in KINDS.values()}
    schemas["manifest.json"] = manifest_schema()
    return {name: json.dumps(schema, indent=2) + "\n" for name, schema in schemas.items()}


def schema_names() -> list[str]:
    """What ``kaizenctl schema NAME`` accepts."""
    return ["manifest", *KINDS, *OUTPUT_SCHEMAS]


def schema_file_for(name: str) -> str | None:
    """The packaged file (relative to ``kaizenctl/schemas``) of a schema name, any case."""
    wanted = name.lower()
    if wanted == "manifest":
        return "manifest.json"
    for kind in KINDS:
        if kind.lower() == wanted:
            return f"{kind.lower()}.json"
    return OUTPUT_SCHEMAS.get(wanted)


def packaged_schemas() -> dict[str, str]:
    """Relative path -> text of every schema installed with kaizenctl (not regenerated)."""
    folder = resources.files("kaizenctl") / "schemas"
    names = [*generated_files(), *OUTPUT_SCHEMAS.values()]
    texts = {}
    for name in names:
        entry = folder.joinpath(*name.split("/"))
        texts[name] = entry.read_text(encoding="utf-8")
    return texts


def main(argv: list[str]) -> int:
    check = "--check" in argv
    arguments = [argument for argument in argv if argument != "--check"]
    folder = Path(arguments[0]) if arguments else DEFAULT_FOLDER
    stale = []
    for name, content in generated_files().items():
        path = folder / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(name)
        if not check:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    if check and stale:
        print(
            f"stale schemas in {folder}: {', '.join(stale)}; "
            "run python -m kaizenctl.manifests.schema"
        )
        return 1
    print(f"{'checked' if check else 'wrote'} {folder}: {len(stale)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
