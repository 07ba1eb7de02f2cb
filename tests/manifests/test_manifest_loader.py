"""load_manifests: sources, locations, substitution, safety limits and the ManifestSet API."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from kaizenctl.errors import ManifestError
from kaizenctl.manifests import source
from kaizenctl.manifests.loader import ManifestSet, load_manifests
from kaizenctl.manifests.models import AgentSpec, DeploymentSpec, SourceLocation
from kaizenctl.redact import MASK, clear_secrets, redact

AGENT = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {{name: {name}}}
spec:
  system_prompt: hi
  provider: openai
  model: gpt-4o
"""


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    clear_secrets()


def problems_of(paths: list[str], **kwargs: object) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(paths, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def test_folders_are_read_recursively_in_sorted_order_skipping_hidden_ones(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "one.yml").write_text(AGENT.format(name="b-one"))
    (tmp_path / "a.yaml").write_text(AGENT.format(name="a"))
    (tmp_path / "c.yaml").write_text(AGENT.format(name="c") + "---\n" + AGENT.format(name="c2"))
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yaml").write_text("on: push\n")
    names = [resource.name for resource in load_manifests([str(tmp_path)], environ={}).resources]
    assert names == ["a", "b-one", "c", "c2"]


def test_a_file_given_twice_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(AGENT.format(name="a"))
    assert len(load_manifests([str(path), str(tmp_path)], environ={}).resources) == 1


def test_standard_input_is_read_for_a_dash() -> None:
    loaded = load_manifests(["-"], stdin=io.StringIO(AGENT.format(name="piped")), environ={})
    assert loaded.resources[0].name == "piped"
    assert loaded.resources[0].source == SourceLocation("<stdin>", 1, 1)


def test_empty_documents_are_skipped() -> None:
    text = "---\n# nothing\n---\n" + AGENT.format(name="a") + "---\n"
    assert len(load_manifests(["-"], stdin=io.StringIO(text), environ={}).resources) == 1


def test_missing_path_and_folder_without_manifests_are_problems(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    assert problems_of([missing, str(tmp_path)], environ={}) == [
        f"{missing}: no such file or folder",
        f"{tmp_path}: no *.yaml or *.yml files",
    ]


def test_files_named_like_manifests_that_cannot_be_read_are_problems_not_skipped(
    tmp_path: Path,
) -> None:
    (tmp_path / "kept.yaml").write_text(AGENT.format(name="kept"))
    (tmp_path / "broken.yaml").symlink_to(tmp_path / "gone.yaml")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "folder.yml").mkdir()
    (tmp_path / "linked.yaml").symlink_to(tmp_path / "kept.yaml")  # a good symlink is fine
    assert problems_of([str(tmp_path)], environ={}) == [
        f"{tmp_path}/broken.yaml: cannot be read as a manifest: "
        f"a broken symlink (to {tmp_path}/gone.yaml)",
        f"{tmp_path}/fifo.yaml: cannot be read as a manifest: a FIFO",
        f"{tmp_path}/folder.yml: cannot be read as a manifest: a folder",
        f"{tmp_path}/loop.yaml: cannot be read as a manifest: a symlink loop",
    ]
    # Named on the command line, the same: never opened (a FIFO would block).
    assert problems_of([str(tmp_path / "fifo.yaml")], environ={}) == [
        f"{tmp_path}/fifo.yaml: cannot be read as a manifest: a FIFO"
    ]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (".nan", "nan cannot be sent: JSON has no NaN or infinity"),
        ("-.inf", "-inf cannot be sent: JSON has no NaN or infinity"),
        ("2024-05-01", "a YAML date or time (2024-05-01) cannot be sent as JSON"),
        ("2024-05-01 10:00:00", "a YAML date or time (2024-05-01T10:00:00)"),
        ("9" * 40, "integer out of range: an API number must fit in 64 bits"),
        ("9" * 100_000, "invalid value: a number of 100,000 digits"),
    ],
    ids=["nan", "inf", "date", "datetime", "40-digits", "100000-digits"],
)
def test_values_json_cannot_carry_are_refused_where_they_are_written(
    written: str, message: str
) -> None:
    text = (
        AGENT.format(name="a")
        + "  max_tokens: 5\n  tools: [t]\n---\n"
        + (
            "apiVersion: kaizen.io/v1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n"
            f"  pattern: sequential\n  config:\n    limit: {written}\n"
        )
    )
    problems = problems_of(["-"], stdin=io.StringIO(text), environ={})
    assert len(problems) == 1, problems  # the reader's refusal only, not also the model's
    assert problems[0].startswith("<stdin>:17:12: Pipeline/p: spec.config.limit: " + message)


def test_a_substituted_value_json_cannot_carry_is_refused_too() -> None:
    text = AGENT.format(name="a") + "  max_tokens: ${MAX_TOKENS}\n"
    problems = problems_of(["-"], stdin=io.StringIO(text), environ={"MAX_TOKENS": "9" * 40})
    assert len(problems) == 1, problems
    assert "<stdin>:8:15: Agent/a: spec.max_tokens: integer out of range" in problems[0]
    assert "9" * 40 not in problems[0]  # and the value, a substituted one, is not shown


def test_resources_remember_where_each_value_is(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        AGENT.format(name="triage")
        + """\
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: support}
spec:
  pattern: sequential
  nodes:
    - id: a
      node_type: agent
      agent: triage
    - {id: b, node_type: router}
  edges:
    - {from: a, to: b}
"""
    )
    pipeline = load_manifests([str(path)], environ={}).get("Pipeline", "support")
    assert pipeline is not None
    assert pipeline.source == SourceLocation(str(path), 9, 1)
    assert pipeline.locations["nodes[0].agent"] == SourceLocation(str(path), 17, 14)
    assert pipeline.locations["nodes[1].node_type"] == SourceLocation(str(path), 18, 26)
    assert pipeline.locations["edges[0].from"] == SourceLocation(str(path), 20, 14)
    assert pipeline.location_of("nodes[1].config") == SourceLocation(str(path), 18, 7)


def test_manifest_set_looks_up_by_kind_name_and_identity() -> None:
    text = (
        AGENT.format(name="a")
        + """\
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: p}
spec: {pattern: sequential}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: p-dev}
spec: {pipeline: p, environment: development}
"""
    )
    loaded = load_manifests(["-"], stdin=io.StringIO(text), environ={})
    assert isinstance(loaded, ManifestSet)
    assert [resource.name for resource in loaded.of_kind("Agent")] == ["a"]
    assert loaded.get("Agent", "missing") is None
    deployment = loaded.get("Deployment", "p-dev")
    assert deployment is not None
    assert loaded.find("Deployment", "p/development") is deployment
    assert isinstance(deployment.spec, DeploymentSpec)
    # Not written means "latest"; the model keeps that as None.
    assert deployment.spec.version is None


def test_substitution_fills_values_marks_them_sensitive_and_registers_them() -> None:
    text = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: a}
spec:
  system_prompt: "Key: ${API_KEY}; literal $${NOT_A_VAR}"
  provider: ${PROVIDER:-openai}
  model: gpt-4o
  max_tokens: ${MAX_TOKENS:-512}
  temperature: ${TEMPERATURE}
"""
    environ = {"API_KEY": "sk-live-abcdef", "TEMPERATURE": "0.25", "PROVIDER": ""}
    agent = load_manifests(["-"], stdin=io.StringIO(text), environ=environ).resources[0]
    assert isinstance(agent.spec, AgentSpec)
    assert agent.spec.system_prompt == "Key: sk-live-abcdef; literal ${NOT_A_VAR}"
    # `:-` takes the default for an empty variable too, as a shell does.
    assert agent.spec.provider == "openai"
    # A plain scalar is typed after substitution, as if the value had been written there.
    assert agent.spec.max_tokens == 512
    assert agent.spec.temperature == 0.25
    # Only values from the environment are secret; a default is written in the manifest.
    assert agent.sensitive_paths == {"system_prompt", "temperature"}
    assert redact("token sk-live-abcdef") == f"token {MASK}"


def test_quoted_substitution_stays_a_string() -> None:
    text = AGENT.format(name="a").replace("model: gpt-4o", 'model: "${MODEL}"')
    agent = load_manifests(["-"], stdin=io.StringIO(text), environ={"MODEL": "1234"}).resources[0]
    assert isinstance(agent.spec, AgentSpec)
    assert agent.spec.model == "1234"


def test_substitution_does_not_touch_metadata() -> None:
    text = AGENT.format(name="a").replace("metadata: {name: a}", "metadata: {name: '${NAME}'}")
    assert problems_of(["-"], stdin=io.StringIO(text), environ={"NAME": "abc"}) == [
        "<stdin>:3:18: Agent/${NAME}: metadata.name: must be lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    ]


def test_merge_keys_are_supported_and_own_keys_win() -> None:
    text = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: a}
spec:
  <<: &defaults {provider: anthropic, model: base, temperature: 0.1}
  model: gpt-4o
  provider: openai
  system_prompt: hi
"""
    agent = load_manifests(["-"], stdin=io.StringIO(text), environ={}).resources[0]
    assert isinstance(agent.spec, AgentSpec)
    assert (agent.spec.provider, agent.spec.model, agent.spec.temperature) == (
        "openai",
        "gpt-4o",
        0.1,
    )
    assert agent.locations["model"].line == 6


def test_non_utf8_file_names_the_byte_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(AGENT.format(name="a").replace("hi", "caf\xe9").encode("latin-1"))
    assert problems_of([str(path)], environ={}) == [
        f"{path}:5:21: not valid UTF-8: byte 0xe9 at offset 83; save the file as UTF-8"
    ]


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + AGENT.format(name="a").encode())
    assert len(load_manifests([str(path)], environ={}).resources) == 1


def test_oversized_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.yaml"
    path.write_text(AGENT.format(name="a") * 2)
    assert problems_of([str(path)], environ={}) == [f"{path}:1:1: file refused: larger than 0 MiB"]


def test_deep_nesting_is_refused_without_recursing_forever() -> None:
    text = AGENT.format(name="a") + "  tools: " + "[" * 150 + "]" * 150 + "\n"
    assert problems_of(["-"], stdin=io.StringIO(text), environ={}) == [
        "<stdin>:1:1: document refused: nested deeper than 100 levels"
    ]


def test_a_yaml_error_keeps_the_documents_before_it_and_other_files(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text(AGENT.format(name="a"))
    bad = tmp_path / "b.yaml"
    bad.write_text(AGENT.format(name="b") + "---\nkind: [\n")
    # Only the syntax error is reported: nothing cascades from the documents that parsed.
    assert problems_of([str(tmp_path)], environ={}) == [
        f"{bad}:10:1: invalid YAML: did not find expected node content (while parsing a flow node)"
    ]


def test_problems_from_several_files_come_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(AGENT.format(name="b").replace("openai", "nope"))
    (tmp_path / "a.yaml").write_text(AGENT.format(name="a").replace("gpt-4o", "''"))
    problems = problems_of([str(tmp_path / "b.yaml"), str(tmp_path / "a.yaml")], environ={})
    assert [problem.split(":")[0] for problem in problems] == [
        str(tmp_path / "b.yaml"),
        str(tmp_path / "a.yaml"),
    ]


def test_a_reference_to_an_invalid_resource_is_not_also_reported_missing() -> None:
    text = (
        AGENT.format(name="a").replace("openai", "nope")
        + """\
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: p}
spec:
  pattern: sequential
  nodes: [{id: n, node_type: agent, agent: a}]
"""
    )
    problems = problems_of(["-"], stdin=io.StringIO(text), environ={})
    assert len(problems) == 1
    assert "spec.provider" in problems[0]
