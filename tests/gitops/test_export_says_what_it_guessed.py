"""export says which deployments it wrote by rule and which names it made up (issue 14, item 9).

The contract keeps neither how a deployment came to be (deploy or promotion) nor
a deployment's manifest name, so export cannot know them: MANIFESTS.md's rule
(`version: latest` when it runs the pipeline's current version, else `version: N`)
stands, and the output names every deployment written that way and every name
export invented, so a person restores `promote_from` and their own names first.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.gitops.conftest import GitOps


def test_item9_export_names_each_deployment_written_by_rule_and_each_invented_name(
    gitops: GitOps, examples: Path, tmp_path: Path
) -> None:
    assert gitops.cli("apply", str(examples), "--auto-approve").code == 0
    out = tmp_path / "exported"

    exported = gitops.cli("export", "--out", str(out))

    assert exported.code == 0, exported.err
    production = yaml.safe_load((out / "deployments" / "support-production.yaml").read_text())
    assert production["spec"]["version"] == "latest"  # the rule: what the server can tell
    lines = exported.out.splitlines()
    by_rule = [line for line in lines if "version: latest" in line or "version: " in line]
    written = {
        "deployments/support-development.yaml",
        "deployments/support-staging.yaml",
        "deployments/support-production.yaml",
        "deployments/ticket-router-development.yaml",
        "deployments/ticket-router-staging.yaml",
    }
    for path in written:
        assert any(path in line for line in by_rule), (path, exported.out)
    assert "promote_from" in exported.out  # what to restore, if it was a promotion
    # Every deployment name is made up: the server keeps none.
    for name in (
        "support-development",
        "support-staging",
        "support-production",
        "ticket-router-development",
        "ticket-router-staging",
    ):
        assert f"Deployment/{name}" in exported.out
    assert "name made up" in exported.out or "names made up" in exported.out
    # Agents, pipelines and policies keep their live names: nothing to say about them.
    assert "Agent/triage" not in exported.out
