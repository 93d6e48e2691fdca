"""One error tree for the service; mapped to HTTP in one middleware (web/middlewares.py).

Each error carries an HTTP status, a stable machine code and a French message
for people; validation errors also name the field and the value.
"""

from __future__ import annotations

from typing import Any


class RegulatorError(Exception):
    """Base of every error a caller may see."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


class BadRequest(RegulatorError):
    status = 400
    code = "bad_request"


class Unauthorized(RegulatorError):
    status = 401
    code = "unauthorized"


class Forbidden(RegulatorError):
    status = 403
    code = "forbidden"


class NotFound(RegulatorError):
    status = 404
    code = "not_found"


class Conflict(RegulatorError):
    status = 409
    code = "conflict"


class PayloadTooLarge(RegulatorError):
    status = 413
    code = "payload_too_large"


class Unprocessable(RegulatorError):
    """Malformed body: names every offending field."""

    status = 422
    code = "validation_error"


class TooManyRequests(RegulatorError):
    status = 429
    code = "rate_limited"


class Unavailable(RegulatorError):
    status = 503
    code = "unavailable"
