"""The render job's life on its `RenderJob` row: create, claim, progress, finish, fail.

The row is the truth; bus events only tell listeners to look. Each change is one conditional
UPDATE (no read-then-write), so a redelivered task, a second worker or a late progress report
cannot move a finished job backwards. Events are emitted by the callers, after these commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from tortoise.expressions import F, Subquery
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.errors import Conflict, Forbidden, NotFound
from core.permissions import Permission
from core.principal import Principal
from db.models.files import FileVersion, ScanStatus
from db.models.render import RenderJob, RenderStatus
from render_farm.pipeline.kinds import is_renderable, normalize_kind
from storage.file_access import check_can_read, readable_files

ACTIVE = (RenderStatus.QUEUED, RenderStatus.RUNNING)
RENDERABLE_SCANS = (ScanStatus.CLEAN, ScanStatus.UNSCANNED)
MAX_ATTEMPTS = 3
MESSAGE_LENGTH = 500


@dataclass(frozen=True)
class JobView:
    id: UUID
    file_id: UUID
    version_id: UUID
    version: int
    status: RenderStatus
    progress: int
    stage: str
    attempts: int
    error_code: str
    error_message: str
    outputs: dict[str, str]
    metadata: dict[str, Any]
    renderer: str
    requested_by: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to render: the job and its version's blob."""

    id: UUID
    file_id: UUID
    version_id: UUID
    owner_id: UUID
    blob_key: str
    size: int
    kind: str
    attempts: int


def job_not_found() -> NotFound:
    return NotFound("render_job_not_found", "No such render job")


async def _view(job: RenderJob) -> JobView:
    version = await FileVersion.get(id=job.version_id)  # type: ignore[attr-defined]
    return _view_of(job, version)


def _view_of(job: RenderJob, version: FileVersion) -> JobView:
    return JobView(
        id=job.id,
        file_id=job.file_id,  # type: ignore[attr-defined]
        version_id=job.version_id,  # type: ignore[attr-defined]
        version=version.number,
        status=job.status,
        progress=job.progress,
        stage=job.stage,
        attempts=job.attempts,
        error_code=job.error_code,
        error_message=job.error_message,
        outputs=dict(job.outputs),
        metadata=dict(job.metadata),
        renderer=job.renderer,
        requested_by=job.requested_by_id,  # type: ignore[attr-defined]
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def is_renderable_version(version: FileVersion) -> bool:
    return version.scan_status in RENDERABLE_SCANS and is_renderable(version.kind)


async def create_job_for_scanned_version(*, version_id: UUID) -> UUID | None:
    """The automatic job after a scan: one per version, however many nodes heard the news.
    Returns the new job's id, or None (not renderable, or a job exists already)."""
    async with in_transaction():
        version = await FileVersion.filter(id=version_id).select_for_update().first()
        if version is None or not is_renderable_version(version):
            return None
        if await RenderJob.filter(version_id=version_id).exists():
            return None
        job = await RenderJob.create(file_id=version.file_id, version_id=version.id)  # type: ignore[attr-defined]
    return job.id


async def request_rerender(*, principal: Principal, file_id: UUID, number: int) -> JobView:
    """A new job for version `number` of a file the caller may re-render (its owner, or staff
    with `render:rerun`); refused while one is still queued or running."""
    file = await check_can_read(principal, file_id)
    if file.owner_id != principal.user_id and not principal.can(Permission.RENDER_RERUN):  # type: ignore[attr-defined]
        raise Forbidden("render_rerun_forbidden", "Only the owner or staff may re-render")
    version = await FileVersion.filter(file_id=file_id, number=number).first()
    if version is None:
        raise NotFound("version_not_found", "No such version")
    if version.scan_status not in RENDERABLE_SCANS:
        raise Conflict("version_not_renderable", "The version has not passed its scan")
    if not is_renderable(version.kind):
        raise Conflict(
            "render_unsupported_kind",
            f"{normalize_kind(version.kind) or 'This'} files are not rendered",
        )
    async with in_transaction():
        await FileVersion.filter(id=version.id).select_for_update().first()
        active = await RenderJob.filter(version_id=version.id, status__in=ACTIVE).first()
        if active is not None:
            raise Conflict(
                "render_in_progress",
                "A render of this version is already queued or running",
                details={"job_id": str(active.id)},
            )
        job = await RenderJob.create(
            file_id=file_id, version_id=version.id, requested_by_id=principal.user_id
        )
    return await _view(job)


async def get_job(*, principal: Principal, job_id: UUID) -> JobView:
    """The job, if the caller may read its file; otherwise not found."""
    job = await RenderJob.filter(id=job_id).first()
    if job is None:
        raise job_not_found()
    try:
        await check_can_read(principal, job.file_id)  # type: ignore[attr-defined]
    except NotFound:
        raise job_not_found() from None
    return await _view(job)


async def list_jobs(
    *,
    principal: Principal,
    status: RenderStatus | None = None,
    file_id: UUID | None = None,
    before_id: UUID | None = None,
    limit: int = 50,
) -> tuple[list[JobView], UUID | None]:
    """Jobs of live files the caller may read (all of them for staff with files:read_any),
    newest first, keyset-paged on the time-ordered id; returns the jobs and the next cursor."""
    query = RenderJob.filter(file_id__in=Subquery(readable_files(principal).values("id")))
    if status is not None:
        query = query.filter(status=status)
    if file_id is not None:
        query = query.filter(file_id=file_id)
    if before_id is not None:
        query = query.filter(id__lt=before_id)
    rows = await query.select_related("version").order_by("-id").limit(limit + 1)
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return [_view_of(job, job.version) for job in rows[:limit]], next_cursor


async def load_job(job_id: UUID) -> JobView | None:
    job = await RenderJob.filter(id=job_id).first()
    return None if job is None else await _view(job)


async def claim_job(job_id: UUID) -> ClaimedJob | None:
    """Mark a queued job (or a running one whose worker died: a redelivery) as running and
    count the attempt. None when there is nothing to do: the job is finished or gone."""
    now = utcnow()
    updated = await RenderJob.filter(id=job_id, status__in=ACTIVE).update(
        status=RenderStatus.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        error_code="",
        error_message="",
    )
    if not updated:
        return None
    return await _claimed(await RenderJob.get(id=job_id))


async def active_job(job_id: UUID) -> ClaimedJob | None:
    """A queued or running job, as a worker sees it; None if it has ended or is gone."""
    job = await RenderJob.filter(id=job_id, status__in=ACTIVE).first()
    return None if job is None else await _claimed(job)


async def _claimed(job: RenderJob) -> ClaimedJob:
    version = await FileVersion.get(id=job.version_id).prefetch_related("file")  # type: ignore[attr-defined]
    return ClaimedJob(
        id=job.id,
        file_id=version.file.id,
        version_id=version.id,
        owner_id=version.file.owner_id,  # type: ignore[attr-defined]
        blob_key=version.blob_key,
        size=version.size,
        kind=version.kind,
        attempts=job.attempts,
    )


async def record_progress(job_id: UUID, *, stage: str, progress: int) -> bool:
    """Store a running job's progress if it moves forward; False if it did not apply."""
    updated = await RenderJob.filter(
        id=job_id, status=RenderStatus.RUNNING, progress__lte=progress
    ).update(stage=stage, progress=progress)
    return bool(updated)


async def finish_job(
    job_id: UUID,
    *,
    outputs: dict[str, str],
    metadata: dict[str, Any],
    geometry: dict[str, Any],
    renderer: str,
) -> bool:
    """Succeed the job and merge `geometry` and the previews into its version's metadata, in
    one transaction. False if the job was no longer running (someone else finished it)."""
    async with in_transaction():
        job = await RenderJob.filter(id=job_id).select_for_update().first()
        if job is None or job.status is not RenderStatus.RUNNING:
            return False
        job.status = RenderStatus.SUCCEEDED
        job.progress = 100
        job.stage = "done"
        job.outputs = outputs
        job.metadata = metadata
        job.renderer = renderer
        job.finished_at = utcnow()
        await job.save(
            update_fields=[
                "status",
                "progress",
                "stage",
                "outputs",
                "metadata",
                "renderer",
                "finished_at",
            ]
        )
        version = await FileVersion.filter(id=job.version_id).select_for_update().get()  # type: ignore[attr-defined]
        version.metadata = {
            **version.metadata,
            "geometry": geometry,
            "previews": {"job_id": str(job_id), "outputs": outputs},
        }
        await version.save(update_fields=["metadata"])
    return True


async def fail_job(job_id: UUID, *, code: str, message: str, renderer: str = "") -> bool:
    """Fail a queued or running job; False if it had already ended."""
    updated = await RenderJob.filter(id=job_id, status__in=ACTIVE).update(
        status=RenderStatus.FAILED,
        error_code=code,
        error_message=message[:MESSAGE_LENGTH],
        renderer=renderer,
        finished_at=utcnow(),
    )
    return bool(updated)


async def unfinished_job_ids() -> list[UUID]:
    """Jobs left queued or running (embedded mode re-queues them at start)."""
    rows = (
        await RenderJob.filter(status__in=ACTIVE)
        .order_by("created_at")
        .values_list("id", flat=True)
    )
    return [UUID(str(row)) for row in rows]
