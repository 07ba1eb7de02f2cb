"""The one error tree of kaizenctl.

Every error a user can meet derives from ``KaizenctlError``; the CLI prints
``Error: <message>`` and exits 1 for any of them (re-raising only with --debug).
"""

from __future__ import annotations


class KaizenctlError(Exception):
    """Base of every error kaizenctl reports to a user."""


class UsageError(KaizenctlError):
    """The command line or the environment is missing or contradicts something."""


class ManifestError(KaizenctlError):
    """One or more manifests are invalid; ``problems`` holds every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PlanError(KaizenctlError):
    """Desired state cannot be reached from live state (e.g. an unreachable pinned version)."""


class ApplyError(KaizenctlError):
    """An apply finished with at least one failed action."""
