"""Secrets never printed: one process-wide registry of values to mask.

Tokens, passwords and every value substituted from ``${VAR}`` are registered
here; every renderer, log handler and error message passes text through
``redact`` before it leaves the process. Redaction covers the common encodings
of each value too (``encodings_of``): a server echoing a password URL-encoded,
or an API key upper-cased, must not get it into a ``-vv`` log.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "(sensitive)"
# Very short values would mask ordinary words; a secret that short is no secret.
_MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def encodings_of(secret: str) -> set[str]:
    """The forms a server or proxy may echo a secret in: as sent, URL-encoded (form or
    path style), JSON-escaped and base64. Matched without regard to case, so an
    upper-cased key or lower-case percent escapes are masked too."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }
    # Unpadded too: the padding is often dropped (JWTs, URL-safe tokens).
    forms |= {form.rstrip("=") for form in forms}
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    global _pattern
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            if value not in _secrets:
                _secrets.add(value)
                _pattern = None


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _secrets:
            forms = {form for secret in _secrets for form in encodings_of(secret)}
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(forms, key=len, reverse=True)
            _pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)
        return _pattern


def redact(text: str) -> str:
    pattern = _compiled()
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


def clear_secrets() -> None:
    """For tests: forget every registered secret."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None
