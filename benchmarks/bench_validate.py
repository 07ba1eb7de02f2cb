"""How long validating 1,000 manifests takes (issue 3: under 1 second).

Generates 1,000 manifests, one per file in nested folders, a quarter of each
kind with realistic references between them (pipelines name agents,
deployments name pipelines and promote along the environments), then times
``load_manifests`` (read, parse, validate, cross-check) over the folder.

    python -m benchmarks.bench_validate [--count N] [--runs R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kaizenctl.api.models import ENVIRONMENTS
from kaizenctl.manifests.loader import load_manifests

AGENT = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata:
  name: agent-{i}
  annotations: {{team: support}}
spec:
  description: Agent number {i}
  system_prompt: |
    You are agent {i}. Answer briefly and cite the knowledge base.
    Escalate anything about billing.
  provider: {provider}
  model: gpt-4o-mini
  temperature: 0.{digit}
  max_tokens: 1024
  tools: [search_kb, create_ticket]
  is_active: true
"""

PIPELINE = """\
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {{name: pipeline-{i}}}
spec:
  description: Pipeline number {i}
  pattern: supervisor_worker
  status: active
  config: {{max_rounds: 3}}
  nodes:
    - id: lead
      node_type: supervisor
      agent: agent-{a}
    - id: worker
      node_type: agent
      agent: agent-{b}
      position: {{x: 300, y: 0}}
    - id: merge
      node_type: synthesizer
  edges:
    - {{from: lead, to: worker}}
    - {{from: worker, to: merge, source_handle: out}}
"""

POLICY = """\
apiVersion: kaizen.io/v1
kind: Policy
metadata: {{name: policy-{i}}}
spec:
  effect: deny
  resource_type: deployment
  actions: [delete, update]
  conditions:
    - {{attribute: environment, operator: eq, value: production}}
    - {{attribute: name, operator: regex, value: "^pipeline-{i}-.*$"}}
"""

DEPLOYMENT = """\
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {{name: pipeline-{p}-{environment}}}
spec:
  pipeline: pipeline-{p}
  environment: {environment}
  {target}
"""


def write_manifests(folder: Path, count: int) -> None:
    quarter = count // 4
    providers = ("openai", "anthropic", "azure", "ollama")
    texts: list[tuple[str, str]] = []
    for i in range(quarter):
        texts.append(
            (
                f"agents/agent-{i}.yaml",
                AGENT.format(i=i, provider=providers[i % 4], digit=i % 10),
            )
        )
        texts.append(
            (
                f"pipelines/pipeline-{i}.yaml",
                PIPELINE.format(i=i, a=i, b=(i + 1) % quarter),
            )
        )
        texts.append((f"policies/policy-{i}.yaml", POLICY.format(i=i)))
    for i in range(count - 3 * quarter):
        environment_index = i % len(ENVIRONMENTS)
        environment = ENVIRONMENTS[environment_index]
        target = (
            f"promote_from: {ENVIRONMENTS[environment_index - 1]}"
            if environment_index
            else "version: latest"
        )
        texts.append(
            (
                f"deployments/{environment}/deployment-{i}.yaml",
                DEPLOYMENT.format(p=i // len(ENVIRONMENTS), environment=environment, target=target),
            )
        )
    for relative, text in texts:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        write_manifests(Path(folder), options.count)
        timings = []
        for _ in range(options.runs):
            started = time.perf_counter()
            manifest_set = load_manifests([folder], environ={})
            timings.append(time.perf_counter() - started)
    assert len(manifest_set.resources) == options.count
    print(
        f"validate {options.count} manifests ({options.count} files): "
        f"best {min(timings):.3f} s, median {statistics.median(timings):.3f} s "
        f"over {options.runs} runs"
    )


if __name__ == "__main__":
    main()
