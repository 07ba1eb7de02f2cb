"""`validate --structure-only`: no ${VAR} read, everything that does not depend on one checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kaizenctl.cli import cli
from kaizenctl.errors import ManifestError
from kaizenctl.manifests.loader import load_manifests

TEMPLATED = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: env-agent}
spec:
  system_prompt: "Bearer ${API_TOKEN}"
  provider: ${PROVIDER}
  model: ${MODEL:-gpt-4o}
  temperature: ${TEMPERATURE}
  max_tokens: ${MAX_TOKENS}
  is_active: ${ACTIVE}
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: env-pipeline}
spec:
  pattern: sequential
  nodes:
    - {id: a, node_type: agent, agent: "${AGENT}", position: {x: "${X}", y: 0}}
    - {id: b, node_type: agent, agent: env-agent}
  edges:
    - {from: a, to: b}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: env-deployment}
spec:
  pipeline: env-pipeline
  environment: ${ENVIRONMENT}
  version: ${VERSION}
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "manifests.yaml"
    path.write_text(text)
    return str(path)


def test_unset_variables_are_problems_normally_and_not_with_structure_only(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, TEMPLATED)
    with pytest.raises(ManifestError) as error:
        load_manifests([path], environ={})
    assert any("environment variable PROVIDER is not set" in p for p in error.value.problems)

    manifest_set = load_manifests([path], environ={}, structure_only=True)
    assert [r.ref for r in manifest_set.resources] == [
        "Agent/env-agent",
        "Pipeline/env-pipeline",
        "Deployment/env-deployment",
    ]


def test_structure_only_reads_no_variable_and_takes_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, TEMPLATED)
    # Even set variables are not read: the result is the same on every machine.
    manifest_set = load_manifests(
        [path], environ={"MODEL": "from-env", "PROVIDER": "anthropic"}, structure_only=True
    )
    agent = manifest_set.get("Agent", "env-agent")
    assert agent is not None
    assert agent.spec.model == "gpt-4o"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        ("  tempreture: 1\n", "spec.tempreture: unknown field 'tempreture'; did you mean"),
        ("  tools: [a, a]\n", "spec.tools: duplicate tool 'a'"),
    ],
)
def test_everything_not_templated_is_still_checked_in_a_templated_document(
    tmp_path: Path, mistake: str, expected: str
) -> None:
    text = TEMPLATED.replace("  is_active: ${ACTIVE}\n", f"  is_active: ${{ACTIVE}}\n{mistake}")
    with pytest.raises(ManifestError) as error:
        load_manifests([_write(tmp_path, text)], environ={}, structure_only=True)
    assert len(error.value.problems) == 1, error.value.problems
    assert expected in error.value.problems[0]
    assert error.value.problems[0].startswith(f"{tmp_path / 'manifests.yaml'}:")


def test_set_wide_rules_still_run_for_documents_with_templated_fields(tmp_path: Path) -> None:
    # The agent's numbers are ${VAR}s, yet the pipeline's other reference is still resolved,
    # the graph still checked, and the deployment still needs an existing pipeline.
    text = (
        TEMPLATED.replace("agent: env-agent}", "agent: env-agnet}")
        .replace("{from: a, to: b}", "{from: a, to: c}")
        .replace("pipeline: env-pipeline", "pipeline: no-such-pipeline")
    )
    with pytest.raises(ManifestError) as error:
        load_manifests([_write(tmp_path, text)], environ={}, structure_only=True)
    problems = "\n".join(error.value.problems)
    assert "spec.nodes[1].agent: Agent 'env-agnet' is not in the manifest set" in problems
    assert "did you mean 'env-agent'?" in problems
    assert "spec.edges[0].to" in problems
    assert "Pipeline 'no-such-pipeline' is not in the manifest set" in problems
    assert "${" not in problems.replace("${VAR", "")


def test_malformed_references_are_still_problems(tmp_path: Path) -> None:
    text = TEMPLATED.replace("${TEMPERATURE}", "${TEMPERATURE")
    with pytest.raises(ManifestError) as error:
        load_manifests([_write(tmp_path, text)], environ={}, structure_only=True)
    assert any("unclosed '${'" in p for p in error.value.problems)


def test_the_command_says_what_it_did_not_check(tmp_path: Path) -> None:
    path = _write(tmp_path, TEMPLATED)
    plain = CliRunner().invoke(cli, ["validate", path], env={"PROVIDER": None})
    assert plain.exit_code == 1
    structure = CliRunner().invoke(cli, ["validate", "--structure-only", path])
    assert structure.exit_code == 0, structure.output
    assert structure.output == "3 resources OK (structure only: ${VAR} values not read)\n"
