"""The shipped pre-commit hooks, run by `pre-commit try-repo` as a team would first try them.

The hooks need no arguments (they read ./manifests) and `kaizenctl-validate` reads no
${VAR}, so a good set passes on a machine without the CI secrets and a bad set fails
with each problem's file, line and field.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import EXAMPLES, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PRE_COMMIT = Path(sys.executable).parent / "pre-commit"

TEMPLATED_AGENT = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: keyed}
spec:
  system_prompt: "Use ${KAIZEN_HOOK_TEST_KEY} for lookups."
  provider: openai
  model: ${KAIZEN_HOOK_TEST_MODEL:-gpt-4o-mini}
  max_tokens: ${KAIZEN_HOOK_TEST_MAX_TOKENS}
"""


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _repository(tmp_path: Path) -> Path:
    """A Git repository of manifests, as a team using kaizenctl has."""
    repo = tmp_path / "team-repo"
    shutil.copytree(EXAMPLES, repo / "manifests")
    (repo / "manifests" / "agents" / "keyed.yaml").write_text(TEMPLATED_AGENT)
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    return repo


def _try_repo(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KAIZEN_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    # No hook id: both shipped hooks run, in one environment pre-commit builds once.
    return subprocess.run(
        [str(PRE_COMMIT), "try-repo", str(ROOT), "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _status(output: str, hook_name: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith(hook_name))
    return line.rsplit(".", 1)[-1].strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
def test_try_repo_passes_a_good_set_and_fails_a_bad_one_with_file_and_line(
    tmp_path: Path,
) -> None:
    repo = _repository(tmp_path)
    good = _try_repo(repo)
    output = good.stdout + good.stderr
    # Structure only: passes without any ${VAR} set.
    assert _status(output, "kaizenctl validate (structure only)") == "Passed", output
    # With values: the unset variables are reported, by file and line.
    assert _status(output, "kaizenctl validate (with ${VAR} values)") == "Failed", output
    assert (
        "manifests/agents/keyed.yaml:5:18: Agent/keyed: spec.system_prompt: "
        "environment variable KAIZEN_HOOK_TEST_KEY is not set"
    ) in output
    assert good.returncode == 1

    triage = repo / "manifests" / "agents" / "triage.yaml"
    triage.write_text(triage.read_text().replace("temperature: 0.1", "temperature: 7"))
    _git("add", "-A", cwd=repo)
    bad = _try_repo(repo)
    output = bad.stdout + bad.stderr
    assert bad.returncode == 1
    assert _status(output, "kaizenctl validate (structure only)") == "Failed", output
    assert "manifests/agents/triage.yaml:" in output
    assert "Agent/triage: spec.temperature: Input should be less than or equal to 2" in output
