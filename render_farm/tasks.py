"""The Celery task: a thin adapter from a message (a job id) to `run_render_job`.

Each worker process builds its own resources at its first task (after the pool's fork): an
event loop, the database, a Redis client, the bus (Redis pub/sub, so progress reaches every hub
node) and the blob store. Delivery is at-least-once (acks_late); the task is idempotent because
`claim_job` skips a job that has already ended. Transient faults retry with backoff; the
pipeline's own failures end the job, they do not retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_shutdown

from core.bus import EventBus, create_bus
from core.logs import get_logger
from core.redis_client import open_redis
from core.settings import Settings
from db.connection import Database
from render_farm.celery_app import RENDER_TASK
from render_farm.pipeline.errors import FailureCode
from render_farm.runner import RenderOptions, TransientRenderError, fail_stuck_job, run_render_job
from storage.blobs import BlobStore, create_blob_store

log = get_logger(__name__)

T = TypeVar("T")
MAX_RETRIES = 4
RETRY_BASE_SECONDS = 5


class WorkerRuntime:
    """The per-process resources of a Celery worker, opened lazily, closed at exit."""

    def __init__(self, settings: Settings, *, backend: str) -> None:
        self.settings = settings
        self.options = RenderOptions.from_settings(settings, backend=backend)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._database: Database | None = None
        self._bus: EventBus | None = None
        self._store: BlobStore | None = None
        self._redis: Any = None

    @property
    def bus(self) -> EventBus:
        assert self._bus is not None
        return self._bus

    @property
    def store(self) -> BlobStore:
        assert self._store is not None
        return self._store

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this process's loop, with the database current; on an interruption
        (Celery's soft time limit) the coroutine is cancelled before the error goes on."""
        loop = self.open()
        database = self._database
        assert database is not None

        async def within_database() -> T:
            with database.activated():
                return await coro

        task = loop.create_task(within_database())
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):  # the first error is the one to raise
                    loop.run_until_complete(task)
            raise

    def open(self) -> asyncio.AbstractEventLoop:
        """The loop and resources of this process (made at its first task, after the fork)."""
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()
        settings = self.settings

        async def open_all() -> None:
            self._database = Database(settings.database_url)
            await self._database.open()
            self._redis = open_redis(settings.redis_url) if settings.redis_url else None
            self._bus = create_bus(redis=self._redis, prefix=settings.redis_prefix)
            await self._bus.start()
            self._store = create_blob_store(settings)
            await self._store.start()

        loop.run_until_complete(open_all())
        self._loop = loop
        log.info("render.worker_ready", backend=self.options.backend)
        return loop

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close_all() -> None:
            if self._store is not None:
                await self._store.close()
            if self._bus is not None:
                await self._bus.close()
            if self._redis is not None:
                await self._redis.aclose()
            if self._database is not None:
                await self._database.close()

        try:
            loop.run_until_complete(close_all())
        finally:
            loop.close()


def register_tasks(app: Celery, settings: Settings, *, backend: str) -> WorkerRuntime:
    runtime = WorkerRuntime(settings, backend=backend)

    @app.task(name=RENDER_TASK, bind=True, max_retries=MAX_RETRIES)  # type: ignore[untyped-decorator]
    def render_job_task(self: Task, job_id: str) -> str:
        job = UUID(job_id)
        runtime.open()
        try:
            outcome = runtime.run(
                run_render_job(job, options=runtime.options, store=runtime.store, bus=runtime.bus)
            )
        except TransientRenderError as exc:
            retries = int(self.request.retries)
            if retries >= MAX_RETRIES:
                runtime.run(
                    fail_stuck_job(
                        job,
                        bus=runtime.bus,
                        code=FailureCode.TOO_MANY_ATTEMPTS,
                        message=str(exc),
                    )
                )
                return "failed"
            raise self.retry(exc=exc, countdown=RETRY_BASE_SECONDS * 2**retries) from exc
        except SoftTimeLimitExceeded:
            runtime.run(
                fail_stuck_job(
                    job, bus=runtime.bus, code=FailureCode.TIMEOUT, message="task time limit"
                )
            )
            return "failed"
        return outcome.status

    def close_runtime(**_: Any) -> None:
        runtime.close()

    worker_process_shutdown.connect(close_runtime, weak=False)
    return runtime
