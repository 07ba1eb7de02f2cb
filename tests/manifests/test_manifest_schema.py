"""kaizenctl/schemas/*.json: generated from the models, current, and in agreement with validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kaizenctl.kinds import KINDS
from kaizenctl.manifests import schema
from tests.paths import EXAMPLES, SCHEMAS

HERE = Path(__file__).parent


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


@pytest.mark.parametrize("name", sorted(schema.generated_files()))
def test_schema_file_matches_the_models(name: str) -> None:
    # Fails when a model changes without `python -m kaizenctl.manifests.schema`.
    assert (SCHEMAS / name).read_text() == schema.generated_files()[name]


def test_there_is_a_schema_per_kind_in_the_registry() -> None:
    assert set(schema.generated_files()) == {f"{kind.lower()}.json" for kind in KINDS} | {
        "manifest.json"
    }


def test_schemas_are_valid_json_schemas() -> None:
    for name in schema.generated_files():
        jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMAS / name).read_text()))


def test_check_mode_reports_stale_schemas(tmp_path: Path) -> None:
    assert schema.main([str(tmp_path), "--check"]) == 1
    assert schema.main([str(tmp_path)]) == 0
    assert schema.main([str(tmp_path), "--check"]) == 0


def valid_documents() -> list[dict[str, Any]]:
    paths = sorted((HERE / "valid").glob("*.yaml")) + sorted(EXAMPLES.rglob("*.yaml"))
    return [document for path in paths for document in documents(path)]


def test_valid_manifests_satisfy_their_kind_schema_and_the_any_kind_schema() -> None:
    any_kind = validator("manifest.json")
    for document in valid_documents():
        validator(f"{document['kind'].lower()}.json").validate(document)
        any_kind.validate(document)


@pytest.mark.parametrize(
    "case",
    [
        "agent-field-typo",
        "agent-provider-unknown",
        "agent-temperature-out-of-range",
        "agent-missing-system-prompt",
        "name-invalid",
        "pipeline-node-type-unknown",
        "pipeline-edge-field-typo",
        "policy-actions-empty",
        "deployment-environment-unknown",
        "unknown-kind",
        "api-version-wrong",
    ],
)
def test_shape_mistakes_are_caught_by_the_editor_schema_too(case: str) -> None:
    document = documents(HERE / "broken" / f"{case}.yaml")[-1]
    assert list(validator("manifest.json").iter_errors(document)) != []
