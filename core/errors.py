"""The error tree. Every error a client can see carries a stable snake_case `code`.

`AppError` subclasses map to HTTP statuses (used by the API's error middleware) and to
`{ok: false, error: {code, message}}` acks on the socket. Raise them with a specific code:

    raise NotFound("file_not_found", "No such file")
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error that is meant to reach a client."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(f"{self.code}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that belong with this error (e.g. Retry-After)."""
        return {}


class BadRequest(AppError):
    status = 400
    default_code = "bad_request"
    default_message = "The request is malformed"


class ValidationFailed(AppError):
    status = 422
    default_code = "validation_failed"
    default_message = "The request did not pass validation"


class Unauthorized(AppError):
    status = 401
    default_code = "unauthorized"
    default_message = "Authentication required"


class Forbidden(AppError):
    status = 403
    default_code = "forbidden"
    default_message = "Not allowed"


class NotFound(AppError):
    status = 404
    default_code = "not_found"
    default_message = "Not found"


class MethodNotAllowed(AppError):
    status = 405
    default_code = "method_not_allowed"
    default_message = "Method not allowed"


class Conflict(AppError):
    status = 409
    default_code = "conflict"
    default_message = "Conflicts with the current state"


class PayloadTooLarge(AppError):
    status = 413
    default_code = "payload_too_large"
    default_message = "The request body is too large"


class UnsupportedMediaType(AppError):
    status = 415
    default_code = "unsupported_media_type"
    default_message = "Unsupported content type"


class RateLimited(AppError):
    status = 429
    default_code = "rate_limited"
    default_message = "Too many requests"

    @property
    def headers(self) -> dict[str, str]:
        retry_after = self.details.get("retry_after")
        return {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else {}


class ServiceUnavailable(AppError):
    status = 503
    default_code = "service_unavailable"
    default_message = "A dependency is unavailable"


class ConfigError(Exception):
    """A setting is missing or malformed; start-up stops with this one line."""

    def __init__(self, message: str, *, setting: str) -> None:
        self.setting = setting
        super().__init__(message)
