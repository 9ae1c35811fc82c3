"""`/healthz` (alive), `/readyz` (dependencies reachable), `/metrics` (Prometheus)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from api.auth import RateClass, public
from api.keys import DATABASE, METRICS, REDIS, SCANNER
from api.metrics import CONTENT_TYPE
from api.openapi import operation
from api.ops.service import check_readiness

TAGS = ("operations",)


class Health(BaseModel):
    status: str


class ReadinessBody(BaseModel):
    status: str
    checks: dict[str, str]


@public(rate=RateClass.NONE)
@operation(summary="Liveness: the process answers", tags=TAGS, responses={200: Health})
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@public(rate=RateClass.NONE)
@operation(
    summary="Readiness: the database (and Redis and clamd when configured) answer",
    tags=TAGS,
    responses={200: ReadinessBody, 503: ReadinessBody},
)
async def readyz(request: web.Request) -> web.Response:
    readiness = await check_readiness(
        database=request.app[DATABASE],
        redis=request.app.get(REDIS),
        scanner=request.app.get(SCANNER),
    )
    body = ReadinessBody(status="ok" if readiness.ready else "unavailable", checks=readiness.checks)
    return web.json_response(body.model_dump(), status=200 if readiness.ready else 503)


@public(rate=RateClass.NONE)
@operation(
    summary="Prometheus metrics",
    tags=TAGS,
    responses={200: None},
    content_types={200: "text/plain"},
)
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
