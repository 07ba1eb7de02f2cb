"""A set the studio dialect cannot hold, and where each refusal must be reported.

Shared by the fake's test (tests/studio/test_studio_refusals.py) and the live one
(tests/live/test_studio_live.py), so both check the same lines for the same reasons.
"""

UNHOLDABLE = """\
apiVersion: kaizen.io/v1
kind: Agent
metadata: {name: with-provider}
spec:
  system_prompt: p
  provider: openai
  model: gpt-4o-mini
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: configured}
spec:
  pattern: blackboard
  config: {max_rounds: 3}
---
apiVersion: kaizen.io/v1
kind: Pipeline
metadata: {name: archived-one}
spec:
  pattern: router
  status: archived
---
apiVersion: kaizen.io/v1
kind: Policy
metadata: {name: two-actions}
spec:
  effect: deny
  resource_type: deployment
  actions: [delete, update]
  conditions:
    - {attribute: card, operator: regex, value: '\\\\d{4}'}
---
apiVersion: kaizen.io/v1
kind: Deployment
metadata: {name: support-dev}
spec:
  pipeline: configured
  environment: development
"""

# Line of the manifest -> the start of the refusal reported at it.
UNHOLDABLE_REFUSALS: dict[int, str] = {
    6: "Agent/with-provider: provider",
    13: "Pipeline/configured: pattern",
    14: "Pipeline/configured: config",
    21: "Pipeline/archived-one: status",
    29: "Policy/two-actions: actions",
    31: "Policy/two-actions: conditions[0].operator",
    37: "Deployment/support-dev: pipeline: 'configured' cannot be held by this server: "
    "this server deploys agents onto gateways",
}
