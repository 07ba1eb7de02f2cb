"""Broken manifests and hostile YAML: a clear error naming where, and zero requests to the server.

Every case runs the real ``kaizenctl`` (``apply --auto-approve``, the command
that could do harm, and ``plan``) with a server configured in the
environment. Validation happens before connecting, so the server's request
log must stay empty — not even a login. The error must be one ``Error:``
report naming the file and line (when there is one), with exit code 1 and no
traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kaizenctl.server.testing import RunningServer, running_server
from tests.paths import EXAMPLES
from tests.reliability.reliability_support import cli_env, run_cli

HEADER = "apiVersion: kaizen.io/v1\n"
AGENT_SPEC = "spec:\n  system_prompt: p\n  provider: openai\n  model: m\n"


def _agent(name: str, extra_spec: str = "") -> str:
    return f"{HEADER}kind: Agent\nmetadata: {{name: {name}}}\n{AGENT_SPEC}{extra_spec}"


def _alias_bomb() -> str:
    # The classic "billion laughs": nine levels of nine aliases, 9**9 strings if expanded.
    lines = [HEADER, "kind: Agent\nmetadata: {name: bomb}\n", AGENT_SPEC, "  tools:\n"]
    lines.append('    - &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n')
    for level in range(1, 9):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"    - &l{level} [{refs}]\n")
    return "".join(lines)


@dataclass(frozen=True)
class Case:
    """Files to write (path -> content), what to pass, and what the error must say."""

    files: dict[str, str | bytes]
    expected: tuple[str, ...]
    args: tuple[str, ...] = ("manifests",)
    stdin: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Set when kaizenctl gets this case wrong today: the reason, for a strict xfail.
    known_bug: str | None = None


CASES: dict[str, Case] = {
    "alias-bomb": Case(
        {"manifests/bomb.yaml": _alias_bomb()},
        ("manifests/bomb.yaml:1:1", "expands to more than 100,000 values"),
    ),
    "deep-nesting": Case(
        {"manifests/deep.yaml": _agent("deep", "  config: " + "[" * 150 + "]" * 150 + "\n")},
        ("manifests/deep.yaml:1:1", "nested deeper than 100 levels"),
    ),
    "huge-file": Case(
        {"manifests/huge.yaml": _agent("huge") + "# padding\n" * 1_200_000},
        ("manifests/huge.yaml:1:1", "larger than 10 MiB"),
    ),
    "huge-document": Case(
        {
            "manifests/wide.yaml": _agent("wide")
            + "  tools:\n"
            + "".join(f"    - t{i}\n" for i in range(100_001))
        },
        ("manifests/wide.yaml:1:1", "more than 100,000 values"),
    ),
    "tab-indentation": Case(
        {"manifests/tabs.yaml": _agent("tabs").replace("  provider", "\tprovider")},
        ("manifests/tabs.yaml:6:1", "tab used for indentation"),
    ),
    "not-utf8": Case(
        {
            "manifests/latin1.yaml": _agent("latin").encode()
            + "  description: caf\xe9\n".encode("latin-1")
        },
        ("manifests/latin1.yaml:8:", "not valid UTF-8"),
    ),
    "nul-byte": Case(
        {"manifests/nul.yaml": _agent("nul", "  description: a\x00b\n")},
        ("manifests/nul.yaml:8:", "invalid YAML"),
    ),
    "python-tag": Case(
        {
            "manifests/evil.yaml": _agent(
                "evil", "  description: !!python/object/apply:os.system ['touch pwned']\n"
            )
        },
        ("manifests/evil.yaml:8:16", "unsupported YAML tag '!!python/object/apply:os.system'"),
    ),
    "custom-tag": Case(
        {"manifests/include.yaml": _agent("inc", "  description: !include secrets.yaml\n")},
        ("manifests/include.yaml:8:16", "unsupported YAML tag '!include'"),
    ),
    "complex-key": Case(
        {"manifests/key.yaml": _agent("key", "  ? [a, b]\n  : c\n")},
        ("manifests/key.yaml:8:5", "a mapping key must be a plain value"),
    ),
    "merge-of-a-scalar": Case(
        {"manifests/merge.yaml": _agent("merge", "  config:\n    <<: 5\n")},
        ("manifests/merge.yaml:9:9", "'<<' merges a mapping"),
    ),
    "syntax-error": Case(
        {"manifests/syntax.yaml": _agent("syntax", "  tools: [a, b\n")},
        ("manifests/syntax.yaml:", "invalid YAML"),
    ),
    "not-a-mapping": Case(
        {"manifests/list.yaml": "- apiVersion: kaizen.io/v1\n  kind: Agent\n"},
        ("manifests/list.yaml:1:1", "a manifest is a mapping"),
    ),
    "wrong-api-version": Case(
        {"manifests/v2.yaml": _agent("v2").replace("kaizen.io/v1", "kaizen.io/v2")},
        ("manifests/v2.yaml:1:13", "must be kaizen.io/v1"),
    ),
    "unknown-kind": Case(
        {"manifests/kind.yaml": _agent("kind").replace("kind: Agent", "kind: Agnet")},
        ("manifests/kind.yaml:2:7", "unknown kind 'Agnet'", "did you mean 'Agent'"),
    ),
    "unknown-field": Case(
        {"manifests/typo.yaml": _agent("typo", "  temprature: 0.3\n")},
        ("manifests/typo.yaml:8:3", "unknown field 'temprature'", "did you mean 'temperature'"),
    ),
    "invalid-enum": Case(
        {"manifests/enum.yaml": _agent("enum").replace("openai", "openia")},
        ("manifests/enum.yaml:6:13", "'openia' is not allowed", "did you mean 'openai'"),
    ),
    "nan-temperature": Case(
        {"manifests/nan.yaml": _agent("nan", "  temperature: .nan\n")},
        ("manifests/nan.yaml:8:16", "Agent/nan: spec.temperature"),
    ),
    "invalid-name": Case(
        {"manifests/name.yaml": _agent("Not_A_Name")},
        ("manifests/name.yaml:3:18", "must be lowercase letters"),
    ),
    "name-too-long": Case(
        {"manifests/long.yaml": _agent("a" * 300)},
        ("manifests/long.yaml:3:18", "metadata.name", "at most 63 characters"),
    ),
    "duplicate-key": Case(
        {"manifests/dupkey.yaml": _agent("dupkey", "  model: other\n")},
        ("manifests/dupkey.yaml:8:3", "duplicate key 'model' (first at line 7)"),
    ),
    "duplicate-name-across-files": Case(
        {"manifests/a.yaml": _agent("twin"), "manifests/b.yaml": _agent("twin")},
        ("manifests/b.yaml:3:18", "duplicate Agent 'twin'; first at manifests/a.yaml:3:18"),
    ),
    "bad-reference": Case(
        {
            "manifests/pipeline.yaml": HEADER
            + "kind: Pipeline\nmetadata: {name: p}\nspec:\n  pattern: sequential\n"
            + "  nodes:\n    - {id: a, node_type: agent, agent: missing-agent}\n  edges: []\n"
        },
        ("manifests/pipeline.yaml:7:40", "Agent 'missing-agent' is not in the manifest set"),
    ),
    "promote-from-later-environment": Case(
        {
            "manifests/p.yaml": HEADER
            + "kind: Pipeline\nmetadata: {name: p}\n"
            + "spec: {pattern: sequential, nodes: [], edges: []}\n"
            + "---\n"
            + HEADER
            + "kind: Deployment\nmetadata: {name: p-staging}\n"
            + "spec: {pipeline: p, environment: staging, promote_from: production}\n"
        },
        (
            "manifests/p.yaml:9:57",
            "Deployment/p-staging",
            "must name an environment before staging",
        ),
    ),
    "unset-variable": Case(
        {"manifests/env.yaml": _agent("env", "  description: ${KAIZEN_NOT_SET_ANYWHERE}\n")},
        ("manifests/env.yaml:8:16", "environment variable KAIZEN_NOT_SET_ANYWHERE is not set"),
    ),
    "one-broken-file-among-the-examples": Case(
        {"manifests/zz-broken.yaml": _agent("broken", "  temperature: 7\n")},
        ("manifests/zz-broken.yaml:8:16", "less than or equal to 2"),
        args=("examples", "manifests"),
    ),
    "broken-stdin": Case(
        {},
        ("<stdin>:6:13", "'openia' is not allowed"),
        args=("-",),
        stdin=_agent("stdin").replace("openai", "openia").encode(),
    ),
    "folder-without-manifests": Case(
        {"manifests/README.md": "nothing here"},
        ("manifests: no *.yaml or *.yml files",),
    ),
    "missing-path": Case({}, ("nowhere.yaml: no such file or folder",), args=("nowhere.yaml",)),
    # Values JSON cannot carry: refused at validate, never by the encoder mid-apply.
    "nan-in-pipeline-config": Case(
        {
            "manifests/p.yaml": HEADER
            + "kind: Pipeline\nmetadata: {name: p}\n"
            + "spec:\n  pattern: sequential\n  config: {threshold: .nan}\n"
        },
        ("manifests/p.yaml:6:23", "spec.config.threshold", "JSON has no NaN or infinity"),
    ),
    "infinite-node-position": Case(
        {
            "manifests/p.yaml": HEADER
            + "kind: Pipeline\nmetadata: {name: p}\nspec:\n  pattern: sequential\n"
            + "  nodes:\n    - {id: r, node_type: router, position: {x: -.inf, y: 0}}\n"
            + "  edges: []\n"
        },
        ("manifests/p.yaml:7:48", "JSON has no NaN or infinity"),
    ),
    "date-in-agent-config": Case(
        {
            "manifests/p.yaml": HEADER
            + "kind: Pipeline\nmetadata: {name: p}\n"
            + "spec:\n  pattern: sequential\n  config: {since: 2024-05-01}\n"
        },
        ("manifests/p.yaml:6:19", "a YAML date or time (2024-05-01)", "quote it"),
    ),
    "integer-of-100000-digits": Case(
        {"manifests/big.yaml": _agent("big", "  max_tokens: " + "9" * 100_000 + "\n")},
        ("manifests/big.yaml:8:15", "a number of 100,000 digits"),
    ),
    "max-tokens-of-40-digits": Case(
        {"manifests/big.yaml": _agent("big", "  max_tokens: " + "9" * 40 + "\n")},
        ("manifests/big.yaml:8:15", "integer out of range"),
    ),
}


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[RunningServer]:
    """One server for the module: each test clears its request log first."""
    with running_server() as live:
        yield live


def _write_case(folder: Path, case: Case) -> None:
    for relative, content in case.files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if "examples" in case.args:
        shutil.copytree(EXAMPLES, folder / "examples")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [("apply", "--auto-approve"), ("plan",)], ids=["apply", "plan"])
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=True, reason=CASES[name].known_bug or "")]
            if CASES[name].known_bug
            else [],
        )
        for name in sorted(CASES)
    ],
)
def test_bad_input_is_refused_with_its_location_and_nothing_is_sent(
    name: str, command: tuple[str, ...], quiet_server: RunningServer, tmp_path: Path
) -> None:
    case = CASES[name]
    _write_case(tmp_path, case)
    quiet_server.clear_request_log()

    result = run_cli(
        *command, *case.args, env=cli_env(quiet_server, **case.env), stdin=case.stdin, cwd=tmp_path
    )

    assert result.code == 1, result.output
    assert result.stderr.startswith("Error: "), result.output
    for expected in case.expected:
        assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert quiet_server.request_log() == []
    # The python/object tag must not have run anything.
    assert not (tmp_path / "pwned").exists()


@pytest.mark.timeout(120)
def test_an_unreadable_manifest_is_an_error_so_prune_never_deletes_what_it_described(
    quiet_server: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "other.yaml").write_text(_agent("other-agent"), encoding="utf-8")
    target = tmp_path / "elsewhere.yaml"
    target.write_text(_agent("kept-agent"), encoding="utf-8")
    (folder / "kept.yaml").symlink_to(target)
    env = cli_env(quiet_server)
    applied = run_cli("apply", "m", "--prune", "--auto-approve", env=env, cwd=tmp_path)
    assert applied.code == 0, applied.output
    target.unlink()  # kept.yaml is now a broken symlink (a submodule not checked out, say)
    quiet_server.clear_request_log()

    for command in (("validate",), ("apply", "--prune", "--auto-approve")):
        result = run_cli(*command, "m", env=env, cwd=tmp_path)
        assert result.code == 1, result.output
        assert "m/kept.yaml: cannot be read as a manifest: a broken symlink" in result.stderr
        assert "deleted" not in result.output
    assert [(e.method, e.path) for e in quiet_server.request_log()] == []
    listed = run_cli("plan", "other.yaml", env=env, cwd=folder)
    assert "kept-agent" in listed.output  # still live, listed as unmanaged


def test_every_case_is_a_distinct_mistake() -> None:
    assert len(CASES) >= 25
