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
