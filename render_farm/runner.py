"""One render job from start to end, the same in a Celery worker and in the embedded pool.

claim the job -> stream the version's blob to a temporary file -> run the pipeline in a child
process (time and memory limits) -> store each output as a content-addressed blob -> finish the
job (row and version metadata in one transaction) -> emit `render.completed`. Any failure the
pipeline knows ends in `render.failed` with its code; the service itself never goes down.
Transient faults (the blob store or database unreachable) raise `TransientRenderError` so
Celery can retry with backoff; the job stays claimable.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from redis.exceptions import RedisError

from core.bus import EventBus
from core.logs import get_logger
from core.settings import Settings
from render_farm.jobs import (
    MAX_ATTEMPTS,
    ClaimedJob,
    active_job,
    claim_job,
    fail_job,
    finish_job,
)
from render_farm.pipeline.contract import (
    STAGE_START,
    PipelineLimits,
    PipelineRequest,
    PipelineResult,
)
from render_farm.pipeline.errors import FailureCode, PipelineError
from render_farm.progress import ProgressReporter
from render_farm.sandbox import CHILD_MODULE, DEFAULT_MEMORY_LIMIT, run_child
from storage.blobs import BlobError, BlobNotFoundError, BlobStore

log = get_logger(__name__)

READ_CHUNK = 1024 * 1024
SOFT_LIMIT_MARGIN = 0.9  # the child's deadline: this share of the task's soft time limit


class TransientRenderError(Exception):
    """A fault that may pass (storage or database unreachable): try the job again later."""


@dataclass(frozen=True)
class RenderOptions:
    """How this worker renders: its OpenGL backend and the limits of one job."""

    backend: str  # egl or osmesa (from the start-up probe)
    egl_device: int = 0
    time_limit: float = 270.0
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    limits: PipelineLimits = field(default_factory=PipelineLimits)
    max_source_bytes: int = 500 * 1024 * 1024
    child_module: str = CHILD_MODULE  # what renders: tests put a crashing stand-in here

    @classmethod
    def from_settings(cls, settings: Settings, *, backend: str) -> RenderOptions:
        return cls(
            backend=backend,
            egl_device=settings.render_egl_device,
            time_limit=settings.render_soft_time_limit * SOFT_LIMIT_MARGIN,
            max_source_bytes=settings.upload_max_bytes,
        )


@dataclass(frozen=True)
class JobOutcome:
    job_id: UUID
    status: str  # succeeded, failed or skipped (nothing to do: a redelivery of a done job)
    error_code: str = ""


async def run_render_job(
    job_id: UUID, *, options: RenderOptions, store: BlobStore, bus: EventBus
) -> JobOutcome:
    """Do job `job_id` if it still needs doing. Idempotent: a finished job is skipped."""
    job = await claim_job(job_id)
    if job is None:
        log.info("render.skipped", job_id=str(job_id))
        return JobOutcome(job_id, "skipped")
    if job.attempts > MAX_ATTEMPTS:
        return await _fail(
            job, bus, PipelineError(FailureCode.TOO_MANY_ATTEMPTS, "the job kept failing"), ""
        )
    log.info("render.started", job_id=str(job_id), kind=job.kind, attempt=job.attempts)
    reporter = ProgressReporter(
        bus=bus,
        job_id=job.id,
        file_id=job.file_id,
        version_id=job.version_id,
        owner_id=job.owner_id,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="render-"))
    started = time.monotonic()
    try:
        result = await _render(
            job, options=options, store=store, reporter=reporter, work_dir=work_dir
        )
        await reporter.report("uploading", STAGE_START["uploading"])
        stored = await _store_outputs(result, store=store)
    except PipelineError as exc:
        return await _fail(job, bus, exc, options.backend)
    finally:
        await asyncio.to_thread(shutil.rmtree, work_dir, True)
    metadata = result.metadata | {"timings": result.timings, "output_files": stored.files}
    outputs = stored.keys
    finished = await finish_job(
        job.id,
        outputs=outputs,
        metadata=metadata,
        geometry=result.metadata,
        renderer=options.backend,
    )
    if not finished:
        return JobOutcome(job.id, "skipped")
    log.info(
        "render.completed",
        job_id=str(job.id),
        seconds=round(time.monotonic() - started, 3),
        triangles=metadata.get("triangles"),
    )
    await _emit(
        bus,
        "render.completed",
        {
            "job_id": str(job.id),
            "file_id": str(job.file_id),
            "version_id": str(job.version_id),
            "owner_id": str(job.owner_id),
            "outputs": outputs,
            "metadata": metadata,
        },
        subject=f"file:{job.file_id}",
    )
    return JobOutcome(job.id, "succeeded")


async def _render(
    job: ClaimedJob,
    *,
    options: RenderOptions,
    store: BlobStore,
    reporter: ProgressReporter,
    work_dir: Path,
) -> PipelineResult:
    await reporter.report("downloading", STAGE_START["downloading"])
    if job.size > options.max_source_bytes:
        raise PipelineError(FailureCode.TOO_LARGE, f"{job.size} bytes, over the limit")
    source = work_dir / f"source.{job.kind or 'bin'}"
    await _download(store, job.blob_key, source)
    out_dir = work_dir / "out"
    out_dir.mkdir()
    request = PipelineRequest(source=source, kind=job.kind, out_dir=out_dir, limits=options.limits)
    payload: dict[str, Any] = {
        "backend": options.backend,
        "egl_device": options.egl_device,
        "memory_limit": options.memory_limit,
        "pipeline": request.to_dict(),
    }
    raw = await run_child(
        payload,
        timeout=options.time_limit,
        work_dir=work_dir,
        on_progress=reporter.report,
        module=options.child_module,
    )
    return PipelineResult.from_dict(raw)


async def _download(store: BlobStore, key: str, target: Path) -> None:
    try:
        chunks = await store.open(key)
    except BlobNotFoundError:
        raise PipelineError(FailureCode.SOURCE_MISSING, "the file's bytes are missing") from None
    except (BlobError, OSError) as exc:
        raise TransientRenderError(f"blob store: {exc}") from exc
    with target.open("wb") as file:
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
        except (BlobError, OSError) as exc:
            raise TransientRenderError(f"blob store: {exc}") from exc


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk


@dataclass(frozen=True)
class StoredOutputs:
    keys: dict[str, str]  # output name -> blob key (RenderJob.outputs)
    files: dict[str, dict[str, Any]]  # output name -> size and content type


async def _store_outputs(result: PipelineResult, *, store: BlobStore) -> StoredOutputs:
    keys: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    for output in result.outputs:
        try:
            blob = await store.put_stream(
                _file_chunks(output.path), size_hint=output.path.stat().st_size
            )
        except (BlobError, OSError) as exc:
            raise TransientRenderError(f"blob store: {exc}") from exc
        keys[output.name] = blob.key
        files[output.name] = {"size": blob.size, "content_type": output.content_type}
    return StoredOutputs(keys=keys, files=files)


async def _fail(job: ClaimedJob, bus: EventBus, error: PipelineError, renderer: str) -> JobOutcome:
    log.warning("render.failed", job_id=str(job.id), code=error.code.value, reason=error.message)
    if await fail_job(job.id, code=error.code.value, message=error.message, renderer=renderer):
        await _emit(
            bus,
            "render.failed",
            {
                "job_id": str(job.id),
                "file_id": str(job.file_id),
                "version_id": str(job.version_id),
                "owner_id": str(job.owner_id),
                "error_code": error.code.value,
            },
            subject=f"file:{job.file_id}",
        )
    return JobOutcome(job.id, "failed", error.code.value)


async def _emit(bus: EventBus, event_type: str, data: dict[str, Any], *, subject: str) -> None:
    try:
        await bus.emit(event_type, data, subject=subject)
    except (RedisError, OSError) as exc:  # the row holds the outcome; the news is lost
        log.warning("render.event_not_sent", event_type=event_type, error=str(exc))


async def fail_stuck_job(job_id: UUID, *, bus: EventBus, code: FailureCode, message: str) -> None:
    """Fail a job from outside its run (Celery's own time limit, retries exhausted)."""
    job = await active_job(job_id)
    if job is not None:
        await _fail(job, bus, PipelineError(code, message), "")
