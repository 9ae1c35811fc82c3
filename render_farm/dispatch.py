"""Getting a queued job to a worker: Celery on Redis in production, a local pool when embedded.

Both take job ids only: the job row holds everything else. `CeleryDispatcher` sends the task
to queue `render` (a worker process runs `render_farm.tasks`); `LocalDispatcher` keeps
`settings.render_workers` runner tasks in the hub process, each rendering in a child process,
so the embedded mode renders in parallel without Redis and a crash stays in the child.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from uuid import UUID

from core.bus import EventBus
from core.logs import get_logger
from core.settings import Settings
from render_farm.backend import GpuMode, RendererUnavailableError, select_backend
from render_farm.celery_app import RENDER_QUEUE, RENDER_TASK, create_celery
from render_farm.jobs import unfinished_job_ids
from render_farm.pipeline.errors import FailureCode
from render_farm.runner import (
    RenderOptions,
    TransientRenderError,
    fail_stuck_job,
    run_render_job,
)
from storage.blobs import BlobStore

log = get_logger(__name__)

RETRY_DELAYS = (2.0, 10.0, 30.0)  # backoff of a job whose storage or database went away


class Dispatcher(abc.ABC):
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open what sending needs."""

    @abc.abstractmethod
    async def submit(self, job_id: UUID) -> None:
        """Hand a committed, queued job to a worker."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop; jobs not done stay queued or running in the database."""


class CeleryDispatcher(Dispatcher):
    def __init__(self, settings: Settings) -> None:
        self._celery = create_celery(settings)

    async def submit(self, job_id: UUID) -> None:
        # kombu's publish blocks on the socket: a thread keeps the loop free.
        await asyncio.to_thread(
            self._celery.send_task, RENDER_TASK, args=[str(job_id)], queue=RENDER_QUEUE
        )
        log.info("render.queued", job_id=str(job_id), via="celery")

    async def close(self) -> None:
        await asyncio.to_thread(self._celery.close)


class LocalDispatcher(Dispatcher):
    """Embedded mode: a queue and `workers` runner tasks in this process."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: BlobStore,
        bus: EventBus,
        gpu: GpuMode = GpuMode.AUTO,
        workers: int | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._bus = bus
        self._gpu = gpu
        self._workers = workers or settings.render_workers
        self._queue: asyncio.Queue[tuple[UUID, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._options: RenderOptions | None = None
        self._backend_lock = asyncio.Lock()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"render-worker-{n}")
            for n in range(self._workers)
        ]
        self._tasks.append(asyncio.create_task(self._requeue(), name="render-requeue"))

    async def submit(self, job_id: UUID) -> None:
        self._queue.put_nowait((job_id, 0))
        log.info("render.queued", job_id=str(job_id), via="local")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def drain(self) -> None:
        """Wait until every submitted job has been handled (tests, shutdown)."""
        await self._queue.join()

    async def _requeue(self) -> None:
        """Jobs a previous run of this process left queued or running are taken up again."""
        try:
            for job_id in await unfinished_job_ids():
                await self.submit(job_id)
        except Exception:  # a start-up chore must not kill the pool
            log.exception("render.requeue_failed")

    async def _render_options(self) -> RenderOptions:
        async with self._backend_lock:
            if self._options is None:
                backend = await select_backend(
                    self._gpu, egl_device=self._settings.render_egl_device
                )
                self._options = RenderOptions.from_settings(self._settings, backend=backend)
            return self._options

    async def _work(self) -> None:
        while True:
            job_id, retries = await self._queue.get()
            try:
                await self._run(job_id, retries)
            except Exception:  # one job's bug must not stop the worker
                log.exception("render.job_crashed", job_id=str(job_id))
            finally:
                self._queue.task_done()

    async def _run(self, job_id: UUID, retries: int) -> None:
        try:
            options = await self._render_options()
        except RendererUnavailableError as exc:
            log.error("render.no_backend", reason=str(exc))
            await fail_stuck_job(
                job_id, bus=self._bus, code=FailureCode.RENDERER_UNAVAILABLE, message=str(exc)
            )
            return
        try:
            await run_render_job(job_id, options=options, store=self._store, bus=self._bus)
        except TransientRenderError as exc:
            if retries >= len(RETRY_DELAYS):
                await fail_stuck_job(
                    job_id, bus=self._bus, code=FailureCode.TOO_MANY_ATTEMPTS, message=str(exc)
                )
                return
            delay = RETRY_DELAYS[retries]
            log.warning("render.retry", job_id=str(job_id), delay=delay, reason=str(exc))
            self._tasks.append(
                asyncio.create_task(self._later(job_id, retries + 1, delay), name="render-retry")
            )

    async def _later(self, job_id: UUID, retries: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self._queue.put_nowait((job_id, retries))


def create_dispatcher(
    settings: Settings, *, store: BlobStore, bus: EventBus, gpu: GpuMode = GpuMode.AUTO
) -> Dispatcher:
    """Celery when REDIS_URL is set, the local pool otherwise."""
    if settings.redis_url is not None:
        return CeleryDispatcher(settings)
    return LocalDispatcher(settings, store=store, bus=bus, gpu=gpu)
