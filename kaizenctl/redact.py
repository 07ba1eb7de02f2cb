"""Secrets never printed: one process-wide registry of values to mask.

Tokens, passwords and every value substituted from ``${VAR}`` are registered
here; every renderer, log handler and error message passes text through
``redact`` before it leaves the process.
"""

from __future__ import annotations

import threading

MASK = "(sensitive)"
# Very short values would mask ordinary words; a secret that short is no secret.
_MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not _secrets:
        return text
    with _lock:
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def clear_secrets() -> None:
    """For tests: forget every registered secret."""
    with _lock:
        _secrets.clear()
