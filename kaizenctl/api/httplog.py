"""Logging of HTTP traffic: the ``kaizenctl.http`` logger, its redaction, and ``-v`` levels.

Only method, path, status and duration are ever logged — never headers or
bodies — and every record still passes through ``redact`` in case a message
quotes something it should not. Imports nothing heavy: the CLI sets this up.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from kaizenctl.redact import redact

HTTP_LOGGER_NAME = "kaizenctl.http"


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record's final text (message, arguments, exception)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so a handler cannot print the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_REDACTING_FILTER = RedactingFilter()


def http_logger() -> logging.Logger:
    logger = logging.getLogger(HTTP_LOGGER_NAME)
    if _REDACTING_FILTER not in logger.filters:
        logger.addFilter(_REDACTING_FILTER)
    return logger


def configure_logging(verbosity: int, stream: TextIO | None = None) -> None:
    """``-v`` logs each request (method, path, status, duration); ``-vv`` adds retries' detail.

    Only kaizenctl's own loggers are opened up: httpx and httpcore stay quiet,
    because their debug output is not ours to vet for secrets.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger("kaizenctl")
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_kaizenctl", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_REDACTING_FILTER)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler._kaizenctl = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    http_logger()
