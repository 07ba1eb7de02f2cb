"""The manifests shown in the README and docs/manifests.md are valid, shape for shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.paths import ROOT, SCHEMAS

PAGES = [ROOT / "README.md", ROOT / "docs" / "manifests.md"]
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def _documents(page: Path) -> list[dict[str, Any]]:
    documents = []
    for block in YAML_BLOCK.findall(page.read_text(encoding="utf-8")):
        if "apiVersion:" not in block or "spec:\n  ..." in block:
            continue  # the skeleton of a document, not an example
        documents += [d for d in yaml.safe_load_all(block) if d]
    return documents


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_example_manifest_in_the_docs_matches_the_schema(page: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "manifest.json").read_text()))
    documents = _documents(page)
    assert documents, f"{page.name} shows no manifest"
    for document in documents:
        errors = [e.message for e in validator.iter_errors(document)]
        assert not errors, (document["metadata"]["name"], errors)


def test_the_manifests_page_shows_every_kind() -> None:
    from kaizenctl.kinds import KINDS

    shown = {d["kind"] for d in _documents(ROOT / "docs" / "manifests.md")}
    # A new kind appears in the generated reference by itself; its meaning needs a section
    # with an example in docs/manifests.md.
    assert shown == set(KINDS), f"docs/manifests.md has no example of {set(KINDS) - shown}"
