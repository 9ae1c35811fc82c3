"""OpenAPI 3.1 from the routes themselves: a handler declares its contract with `@operation`.

The request and response bodies are pydantic models, so the schema in the document is the one
the handler validates with. `build_spec` walks the router; `setup_openapi` serves the document
at `/api/v1/openapi.json` and Swagger UI (shipped by swagger-ui-bundle, no CDN) at `/api/docs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from swagger_ui_bundle import swagger_ui_path

from api.auth import RateClass, public

SPEC_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/docs"
_REF = "#/components/schemas/{model}"

F = TypeVar("F", bound=Callable[..., Any])


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    """Every error: a stable snake_case `code`, a human message and optional details."""

    error: ErrorBody


@dataclass(frozen=True)
class Operation:
    summary: str
    tags: tuple[str, ...] = ()
    description: str = ""
    request: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    content_types: dict[int, str] = field(default_factory=dict)
    auth: bool = False


def operation(
    *,
    summary: str,
    tags: tuple[str, ...] = (),
    description: str = "",
    request: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None] | None = None,
    content_types: dict[int, str] | None = None,
    auth: bool = False,
) -> Callable[[F], F]:
    """Attach the OpenAPI description of a handler to it."""
    spec = Operation(
        summary=summary,
        tags=tags,
        description=description,
        request=request,
        responses=responses or {200: None},
        content_types=content_types or {},
        auth=auth,
    )

    def decorate(handler: F) -> F:
        handler.__openapi__ = spec  # type: ignore[attr-defined]
        return handler

    return decorate


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF)
        for name, definition in schema.pop("$defs", {}).items():
            self.components[name] = definition
        self.components[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}


def build_spec(app: web.Application, *, title: str, version: str) -> dict[str, Any]:
    schemas = _Schemas()
    error_ref = schemas.ref(ErrorResponse)
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        spec: Operation | None = getattr(route.handler, "__openapi__", None)
        resource = route.resource
        if spec is None or resource is None or route.method == "HEAD":
            continue
        item: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": spec.summary,
            "tags": list(spec.tags),
            "responses": {},
        }
        if spec.description:
            item["description"] = spec.description
        if spec.auth:
            item["security"] = [{"bearerAuth": []}]
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_parameters(resource.canonical)
        ]
        if parameters:
            item["parameters"] = parameters
        if spec.request is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schemas.ref(spec.request)}},
            }
        for status, model in spec.responses.items():
            content_type = spec.content_types.get(status, "application/json")
            response: dict[str, Any] = {"description": _describe(status)}
            if model is not None:
                response["content"] = {content_type: {"schema": schemas.ref(model)}}
            elif content_type != "application/json":
                response["content"] = {content_type: {"schema": {"type": "string"}}}
            item["responses"][str(status)] = response
        item["responses"]["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": error_ref}},
        }
        paths.setdefault(resource.canonical, {})[route.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _path_parameters(canonical: str) -> list[str]:
    names = []
    for part in canonical.split("/"):
        if part.startswith("{") and part.endswith("}"):
            names.append(part[1:-1].split(":", 1)[0])
    return names


def _describe(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


_DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>IdEinstein hub API</title>
<link rel="stylesheet" href="{docs}/static/swagger-ui.css">
</head>
<body>
<main id="swagger-ui"></main>
<script src="{docs}/static/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""

_DOCS_INIT = """window.ui = SwaggerUIBundle({{
  url: "{spec}",
  dom_id: "#swagger-ui",
  deepLinking: true,
}});
"""


def setup_openapi(app: web.Application, *, title: str, version: str) -> None:
    """Serve the document and the docs page; the document is built once, after routes are set."""
    cache: dict[str, Any] = {}

    @public(rate=RateClass.NONE)
    @operation(summary="This API's OpenAPI document", tags=("operations",))
    async def openapi_document(request: web.Request) -> web.Response:
        if "spec" not in cache:
            cache["spec"] = build_spec(request.app, title=title, version=version)
        return web.json_response(cache["spec"])

    @public(rate=RateClass.NONE)
    async def docs_page(request: web.Request) -> web.Response:
        return web.Response(text=_DOCS_HTML.format(docs=DOCS_PATH), content_type="text/html")

    @public(rate=RateClass.NONE)
    async def docs_init(request: web.Request) -> web.Response:
        return web.Response(
            text=_DOCS_INIT.format(spec=SPEC_PATH), content_type="application/javascript"
        )

    app.router.add_get(SPEC_PATH, openapi_document)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(f"{DOCS_PATH}/init.js", docs_init)
    app.router.add_static(f"{DOCS_PATH}/static", Path(swagger_ui_path), append_version=True)
