"""The LuodiError hierarchy: a message a user can act on, an exit code and an HTTP status.

The CLI prints `message` on one line and exits with `exit_code`; the API layer returns the
OpenAI error shape with `http_status`, `error_type` and `code`.
"""

from __future__ import annotations


class LuodiError(Exception):
    """Base of every error luodi reports to a user; a failure on luodi's side by default."""

    exit_code: int = 1
    http_status: int = 500
    error_type: str = "server_error"
    code: str = "failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInputError(LuodiError):
    """The user's input (arguments, files, configs, requests) cannot be used as given."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"
    code = "bad_input"


class NotFoundError(BadInputError):
    """A reference (dataset, model, file) resolves to nothing."""

    http_status = 404
    code = "not_found"


class ConflictError(BadInputError):
    """The request conflicts with what exists (e.g. a name already taken)."""

    http_status = 409
    code = "conflict"


class MissingDependencyError(LuodiError):
    """An optional engine or system tool is not installed; the message says how to get it."""

    code = "missing_dependency"


class StageFailedError(LuodiError):
    """A stage ran but failed; nothing was registered."""

    code = "stage_failed"


class AuthError(LuodiError):
    """The request carries no API key, or one that is unknown or revoked."""

    exit_code = 2
    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(LuodiError):
    """The key is valid but its role, team or allowed endpoints do not cover the request."""

    exit_code = 2
    http_status = 403
    error_type = "permission_error"
    code = "permission_denied"


class RateLimitedError(LuodiError):
    """Too many requests or tokens for the key's limits; try again after `retry_after` s."""

    exit_code = 2
    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float, code: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))
        if code:
            self.code = code


class BackendUnavailableError(LuodiError):
    """The model backend failed or cannot be reached (an upstream 5xx, a lost connection)."""

    http_status = 502
    error_type = "upstream_error"
    code = "backend_unavailable"


class BackendTimeoutError(BackendUnavailableError):
    """The model backend did not answer in time."""

    http_status = 504
    code = "backend_timeout"
