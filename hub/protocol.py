"""The socket protocol's envelope: every client event is answered with an ack.

`{ok: true, ...}` on success, `{ok: false, error: {code, message}}` otherwise. Payloads are
validated with pydantic models before anything runs; a bad one costs an error ack, never the
connection, and nothing is written.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import AppError, ValidationFailed

M = TypeVar("M", bound=BaseModel)


def ok(**data: Any) -> dict[str, Any]:
    return {"ok": True, **data}


def error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"ok": False, "error": body}


def from_app_error(exc: AppError) -> dict[str, Any]:
    return error(exc.code, exc.message, exc.details or None)


def parse(model: type[M], payload: Any) -> M:
    if not isinstance(payload, dict):
        raise ValidationFailed("invalid_payload", "The payload must be an object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed(
            "invalid_payload", "The payload did not pass validation", details={"fields": fields}
        ) from None
