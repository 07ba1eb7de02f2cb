"""The API's branch of kaizenctl's error tree.

Every failure of an HTTP exchange becomes one of these at the edge
(``kaizenctl.api.session``): httpx exceptions never leave the API layer. The
message names method, path, status and the server's ``detail`` so that a user
can act on it, and it is passed through ``redact`` because a server may echo a
secret it was sent (a validation error quoting a password, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kaizenctl.errors import KaizenctlError
from kaizenctl.redact import redact

if TYPE_CHECKING:
    import httpx

LOGIN_AGAIN_HINT = (
    "log in again: set KAIZEN_TOKEN (and KAIZEN_REFRESH_TOKEN) to fresh tokens, "
    "or set KAIZEN_EMAIL and KAIZEN_PASSWORD"
)

# Location prefixes FastAPI puts in front of a field path; a user wants the field.
_LOCATION_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})


def format_detail(detail: Any) -> str:
    """``detail`` as one line: a string as is, a validation list as ``field: message``."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_format_validation_item(item) for item in detail)
    return str(detail)


def _format_validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = item.get("loc")
    msg = str(item.get("msg", "invalid"))
    if not isinstance(loc, Sequence) or isinstance(loc, str) or not loc:
        return msg
    parts = [str(part) for part in loc]
    if len(parts) > 1 and parts[0] in _LOCATION_ROOTS:
        parts = parts[1:]
    return f"{'.'.join(parts)}: {msg}"


class ApiError(KaizenctlError):
    """An HTTP exchange with the server failed; ``status`` is None when no answer came."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None = None,
        detail: str = "",
        *,
        hint: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = redact(detail)
        self.hint = hint
        super().__init__(self._message())

    def with_hint(self, hint: str) -> ApiError:
        """This error, its hint replaced (a caller that knows more about the likely cause)."""
        self.hint = hint
        self.args = (self._message(),)
        return self

    def _message(self) -> str:
        head = f"{self.method} {self.path}"
        if self.status is not None:
            head += f" answered {self.status}"
        text = f"{head}: {self.detail}" if self.detail else head
        if self.hint:
            text += f" ({self.hint})"
        return redact(text)


class BadRequestError(ApiError):
    """400: the server refused the request as malformed."""


class AuthenticationError(ApiError):
    """401 that a refresh could not cure, or credentials refused: the user must log in again."""


class PermissionDeniedError(ApiError):
    """403."""


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409: a duplicate name, a delete of something in use, a refused promote or rollback."""


class ValidationFailedError(ApiError):
    """422: the body or query broke the contract; ``detail`` lists ``field: message``."""


class RateLimitedError(ApiError):
    """429 that outlasted the retry budget."""


class ServerError(ApiError):
    """5xx (after retries, where retrying was allowed)."""


class ResponseFormatError(ApiError):
    """The server answered, but not in the contract's shape."""

    @classmethod
    def of(cls, response: httpx.Response, detail: str) -> ResponseFormatError:
        """The error about ``response``: its request's method and path, its status."""
        return cls(response.request.method, response.request.url.path, response.status_code, detail)


class TransportError(ApiError):
    """No answer: the connection failed, was reset, or timed out."""


class OutcomeUnknownError(TransportError):
    """A non-idempotent request was sent and its answer lost: it may or may not have happened.

    Raised to the dialect, which resolves it by looking the result up (never by
    sending the request again blindly). ``retry_after`` is the server's
    ``Retry-After`` when it answered (a 503), to wait before sending again.
    """

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None = None,
        detail: str = "",
        *,
        hint: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(method, path, status, detail, hint=hint)


class DuplicateNameError(ApiError):
    """Live state holds more than one resource of a kind with one name: kaizenctl will not guess."""

    def __init__(self, method: str, path: str, kind: str, name: str, ids: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.ids = ids
        super().__init__(
            method,
            path,
            None,
            f"{len(ids)} {kind} resources are named {name!r} (ids: {', '.join(ids)}); "
            "kaizenctl identifies them by name and will not guess — delete or rename all but one",
        )


class DeploymentTimeoutError(ApiError):
    """A deployment did not settle (active, failed or stopped) within the time given."""

    def __init__(self, method: str, path: str, deployment_id: str, status: str, timeout: float):
        self.deployment_id = deployment_id
        self.last_status = status
        super().__init__(
            method,
            path,
            None,
            f"deployment {deployment_id} still {status!r} after {timeout:g}s "
            "(it did not reach active, failed or stopped)",
        )


class AmbiguousResultError(ApiError):
    """A lost answer could not be resolved: the look-up found more than one candidate."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationFailedError,
    429: RateLimitedError,
}


def error_for_status(
    method: str, path: str, status: int, detail: Any, *, reason: str = "", hint: str = ""
) -> ApiError:
    """The error for an answer with a failing status; ``detail`` is the body's ``detail``."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    text = format_detail(detail) or reason
    if cls is AuthenticationError and not hint:
        hint = LOGIN_AGAIN_HINT
    return cls(method, path, status, text, hint=hint)
