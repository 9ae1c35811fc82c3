"""Render jobs over REST: a job's state, a re-render, and the job's preview files.

A job is visible to whoever may read its file (owner, grantees, staff with files:read_any);
anyone else is told `render_job_not_found`, as for a job that does not exist. A re-render is
for the file's owner and staff with `render:rerun`. Outputs are served with long-lived cache
headers: a job's outputs never change (a re-render is a new job with a new id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import authenticated, principal_of
from api.files.downloads import BlobDownload, CachePolicy, plan_download, send_download
from api.keys import BLOBS, BUS, RENDER_FARM, SETTINGS
from api.openapi import operation
from api.requests import json_response, path_uuid, read_query
from core.errors import NotFound
from db.models.render import RenderStatus
from render_farm.jobs import JobView
from render_farm.service import RenderFarm

TAGS = ("renders",)
OUTPUT_NAME_MAX = 40


class RenderJobBody(BaseModel):
    id: UUID
    file_id: UUID
    version_id: UUID
    version: int
    status: str = Field(description="queued, running, succeeded or failed")
    progress: int = Field(description="Percent, 0 to 100")
    stage: str = Field(
        description="downloading, loading, analysing, rendering, simplifying, uploading, done"
    )
    attempts: int
    error_code: str = Field(
        description="unsupported_format, corrupt_file, too_large, timeout, render_crashed, ..."
    )
    error_message: str
    outputs: dict[str, str] = Field(description="Output name to the URL that serves it")
    metadata: dict[str, Any] = Field(description="Triangles, bounding box, volume, area, ...")
    renderer: str = Field(description="egl or osmesa (the OpenGL backend that rendered)")
    requested_by: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RenderJobList(BaseModel):
    items: list[RenderJobBody]
    next_cursor: str | None = Field(description="Pass as `before` for the next (older) page")


class RenderJobQuery(BaseModel):
    status: RenderStatus | None = None
    file_id: UUID | None = None
    before: UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)


def render_job_body(job: JobView) -> RenderJobBody:
    urls = {name: f"/api/v1/render-jobs/{job.id}/outputs/{name}" for name in sorted(job.outputs)}
    return RenderJobBody(
        id=job.id,
        file_id=job.file_id,
        version_id=job.version_id,
        version=job.version,
        status=job.status.value,
        progress=job.progress,
        stage=job.stage,
        attempts=job.attempts,
        error_code=job.error_code,
        error_message=job.error_message,
        outputs=urls,
        metadata=job.metadata,
        renderer=job.renderer,
        requested_by=job.requested_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _job_id(request: web.Request) -> UUID:
    return path_uuid(request, "job_id", not_found="render_job_not_found")


def _version_number(request: web.Request) -> int:
    raw = request.match_info["number"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound("version_not_found", "No such version")
    return int(raw)


@authenticated()
@operation(
    summary="Render jobs, newest first: of the caller's files, or all with files:read_any",
    description="Filters: `status`, `file_id`; keyset paging with `before` (the previous "
    "page's `next_cursor`).",
    tags=TAGS,
    responses={200: RenderJobList},
    auth=True,
)
async def list_render_jobs(request: web.Request) -> web.Response:
    query = read_query(request, RenderJobQuery)
    jobs, cursor = await request.app[RENDER_FARM].jobs(
        principal=principal_of(request),
        status=query.status,
        file_id=query.file_id,
        before_id=query.before,
        limit=query.limit,
    )
    return json_response(
        RenderJobList(
            items=[render_job_body(job) for job in jobs],
            next_cursor=str(cursor) if cursor else None,
        )
    )


@authenticated()
@operation(
    summary="A render job: status, progress, outputs and the model's geometry",
    tags=TAGS,
    responses={200: RenderJobBody},
    auth=True,
)
async def get_render_job(request: web.Request) -> web.Response:
    job = await request.app[RENDER_FARM].job(
        principal=principal_of(request), job_id=_job_id(request)
    )
    return json_response(render_job_body(job))


@authenticated()
@operation(
    summary="Render a version again (its owner, or staff with render:rerun)",
    description="Refused with `render_in_progress` (409) while a job of the version is queued "
    "or running, `version_not_renderable` (409) before its scan passed, "
    "`render_unsupported_kind` (409) for a kind the farm does not render.",
    tags=TAGS,
    responses={202: RenderJobBody},
    auth=True,
)
async def rerender_version(request: web.Request) -> web.Response:
    job = await request.app[RENDER_FARM].rerender(
        principal=principal_of(request),
        file_id=path_uuid(request, "file_id", not_found="file_not_found"),
        number=_version_number(request),
    )
    return json_response(render_job_body(job), status=202)


@authenticated()
@operation(
    summary="One output of a render job (a PNG view or thumbnail, or the web GLB)",
    tags=TAGS,
    responses={200: None, 302: None, 304: None},
    content_types={200: "image/png"},
    auth=True,
)
async def get_render_output(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if len(name) > OUTPUT_NAME_MAX:
        raise NotFound("render_output_not_found", "The job has no such output")
    output = await request.app[RENDER_FARM].output(
        principal=principal_of(request), job_id=_job_id(request), name=name
    )
    extension = "glb" if output.content_type == "model/gltf-binary" else "png"
    blob = BlobDownload(
        key=output.key,
        size=output.size,
        mime_type=output.content_type,
        filename=f"{output.name}.{extension}",
    )
    store = request.app[BLOBS]
    plan = await plan_download(request, store, blob)
    return await send_download(request, store, blob, plan, cache=CachePolicy.IMMUTABLE)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/render-jobs", list_render_jobs)
    r.add_get("/api/v1/render-jobs/{job_id}", get_render_job)
    r.add_get("/api/v1/render-jobs/{job_id}/outputs/{name}", get_render_output)
    r.add_post("/api/v1/files/{file_id}/versions/{number}/render", rerender_version)


async def render_farm_ctx(app: web.Application) -> AsyncIterator[None]:
    """The render farm's listener and dispatcher (Celery sender, or the embedded pool): after
    the database, the bus and the blob store; before the scan worker, whose `file.scanned`
    events it listens for."""
    farm = RenderFarm(app[SETTINGS], bus=app[BUS], store=app[BLOBS])
    await farm.start()
    app[RENDER_FARM] = farm
    try:
        yield
    finally:
        await farm.close()
