"""Reading request bodies and queries into pydantic models, with stable error codes."""

from __future__ import annotations

import json
from typing import TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.errors import BadRequest, NotFound, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)


def _validation_details(exc: ValidationError) -> dict[str, object]:
    return {
        "fields": [
            {
                "field": ".".join(str(p) for p in err["loc"]),
                "problem": err["type"],
                "message": err["msg"],
            }
            for err in exc.errors(include_url=False, include_input=False)
        ]
    }


async def read_json(request: web.Request, model: type[M]) -> M:
    """The body as `model`: 415 if not JSON, 400 `malformed_json`, 422 `validation_failed`."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("unsupported_media_type", "Send the body as application/json")
    raw = await request.read()
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("malformed_json", "The body is not valid JSON") from None
    return validate(model, data)


def path_uuid(request: web.Request, name: str, *, not_found: str) -> UUID:
    """A path parameter that must be a UUID; anything else is a 404 with `not_found` as code
    (an id that cannot exist is simply not found)."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise NotFound(not_found, "Not found") from None


def json_response(body: BaseModel, *, status: int = 200) -> web.Response:
    """A pydantic body as the JSON response (pydantic serialises UUIDs and datetimes)."""
    return web.json_response(text=body.model_dump_json(), status=status)


def read_query(request: web.Request, model: type[M]) -> M:
    return validate(model, dict(request.query))


def validate(model: type[M], data: object) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "validation_failed",
            "The request did not pass validation",
            details=_validation_details(exc),
        ) from None
