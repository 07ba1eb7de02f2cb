"""docs/manifest-reference.md is generated from the models and the registry, and current."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizenctl.kinds import KINDS
from kaizenctl.manifests import reference
from kaizenctl.manifests.models import AgentSpec
from tests.paths import ROOT

DOCS = ROOT / "docs" / "manifest-reference.md"


def test_the_reference_in_docs_matches_the_models() -> None:
    # Fails when a model, a kind or a dialect changes without regenerating the page:
    #   python -m kaizenctl.manifests.reference
    assert DOCS.read_text(encoding="utf-8") == reference.render_reference()


def test_check_mode_reports_a_stale_reference(tmp_path: Path) -> None:
    page = tmp_path / "reference.md"
    assert reference.main([str(page), "--check"]) == 1
    assert reference.main([str(page)]) == 0
    assert reference.main([str(page), "--check"]) == 0
    page.write_text(page.read_text().replace("`0.7`", "`0.8`"))
    assert reference.main([str(page), "--check"]) == 1


def test_every_kind_and_every_field_has_a_row() -> None:
    page = reference.render_reference()
    for info in KINDS.values():
        assert f"\n## {info.kind}\n" in page
        section = page.split(f"\n## {info.kind}\n", 1)[1].split("\n## ", 1)[0]
        for row in reference.field_rows(info.spec_model, info):
            assert f"| `{row.path}` |" in section, (info.kind, row.path)
    assert "| `nodes[].position.x` | number | yes |" in page
    assert "| `edges[].from` | string | yes |" in page


def test_rows_carry_type_default_allowed_values_and_notes() -> None:
    rows = {row.path: row for row in reference.field_rows(AgentSpec, KINDS["Agent"])}
    assert rows["temperature"].type == "number"
    assert rows["temperature"].default == "`0.7`"
    assert rows["temperature"].allowed == "0 to 2"
    assert rows["provider"].allowed == "`openai`, `anthropic`, `azure`, `ollama`"
    # Optional in the manifests: the contract dialect requires it at plan, studio refuses it.
    assert not rows["provider"].required
    assert rows["system_prompt"].required
    assert rows["max_tokens"].type == "integer or null"
    assert rows["tools"].default == "`[]`"
    assert "A set" in rows["tools"].notes


def test_each_dialect_is_a_column_filled_from_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_positions(kind: str, path: str) -> bool:
        return not path.startswith("nodes[].position")

    monkeypatch.setattr(
        reference,
        "DIALECTS",
        (*reference.DIALECTS, reference.Dialect("tiny", no_positions)),
    )
    page = reference.render_reference()
    assert "| `contract` dialect | `studio` dialect | `tiny` dialect |" in page
    position_row = next(line for line in page.splitlines() if "`nodes[].position.x`" in line)
    assert position_row.endswith("| yes | yes | no |")
    id_row = next(line for line in page.splitlines() if "`nodes[].id`" in line)
    assert id_row.endswith("| yes | yes | yes |")


def _dialect_columns() -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, field) -> (contract cell, studio cell)."""
    return {
        (kind, line.split("`")[1]): (
            line.rsplit("|", 3)[1].strip(),
            line.rsplit("|", 3)[2].strip(),
        )
        for kind, section in _sections(reference.render_reference()).items()
        for line in section.splitlines()
        if line.startswith("| `")
    }


def test_the_contract_column_says_what_a_contract_server_refuses() -> None:
    # tests/reconcile/test_contract_refuses_gateways.py shows the refusal itself.
    contract = {key: cells[0] for key, cells in _dialect_columns().items()}
    assert contract[("Gateway", "api_url")] == "no"
    assert contract[("Deployment", "agent")] == "no"
    assert contract[("Deployment", "gateway")] == "no"
    assert contract[("Deployment", "pipeline")] == "yes"
    assert contract[("Agent", "model")] == "yes"
    assert contract[("Agent", "agent_type")] == "no"


def test_the_studio_column_reads_the_studio_capability_table() -> None:
    # tests/studio/test_studio_refusals.py shows the refusals themselves.
    studio = {key: cells[1] for key, cells in _dialect_columns().items()}
    assert studio[("Agent", "provider")] == "no"
    assert studio[("Agent", "agent_type")] == "yes"
    assert studio[("Deployment", "pipeline")] == "no"
    assert studio[("Deployment", "agent")] == "yes"
    assert studio[("Gateway", "api_url")] == "yes"


def _sections(page: str) -> dict[str, str]:
    return {
        chunk.split("\n", 1)[0]: chunk.split("\n", 1)[1]
        for chunk in page.split("\n## ")[1:]
        if chunk.split("\n", 1)[0] in KINDS
    }
