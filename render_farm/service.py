"""The render farm as the hub sees it: listens for scanned versions, queues their renders,
and answers the routes (a job, a re-render, an output blob).

`file.scanned` with status `clean` or `unscanned` for a renderable kind creates the version's
render job (once, even when several hub nodes hear the same event) and dispatches it after
the row has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from core.bus import Event, EventBus, Subscription
from core.errors import NotFound
from core.logs import get_logger
from core.principal import Principal
from core.settings import Settings
from db.models.render import RenderStatus
from render_farm.backend import GpuMode
from render_farm.dispatch import Dispatcher, create_dispatcher
from render_farm.jobs import (
    JobView,
    create_job_for_scanned_version,
    get_job,
    list_jobs,
    request_rerender,
)
from storage.blobs import BlobStore

log = get_logger(__name__)

RENDERABLE_SCAN_STATUSES = frozenset({"clean", "unscanned"})


@dataclass(frozen=True)
class OutputBlob:
    name: str
    key: str
    size: int
    content_type: str


class RenderFarm:
    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus,
        store: BlobStore,
        dispatcher: Dispatcher | None = None,
        gpu: GpuMode = GpuMode.AUTO,
    ) -> None:
        self._bus = bus
        self.dispatcher = dispatcher or create_dispatcher(settings, store=store, bus=bus, gpu=gpu)
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        await self.dispatcher.start()
        self._subscription = await self._bus.subscribe("file.scanned", self._on_scanned)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        await self.dispatcher.close()

    async def drain(self) -> None:
        """Wait until every `file.scanned` event so far has been handled (tests)."""
        if self._subscription is not None:
            await self._subscription.drain()

    async def _on_scanned(self, event: Event) -> None:
        if event.data.get("status") not in RENDERABLE_SCAN_STATUSES:
            return
        try:
            version_id = UUID(str(event.data["version_id"]))
        except (KeyError, ValueError):
            log.warning("render.bad_scanned_event", event_id=event.id)
            return
        job_id = await create_job_for_scanned_version(version_id=version_id)
        if job_id is not None:
            await self.dispatcher.submit(job_id)

    async def rerender(self, *, principal: Principal, file_id: UUID, number: int) -> JobView:
        job = await request_rerender(principal=principal, file_id=file_id, number=number)
        await self.dispatcher.submit(job.id)
        return job

    async def job(self, *, principal: Principal, job_id: UUID) -> JobView:
        return await get_job(principal=principal, job_id=job_id)

    async def jobs(
        self,
        *,
        principal: Principal,
        status: RenderStatus | None = None,
        file_id: UUID | None = None,
        before_id: UUID | None = None,
        limit: int = 50,
    ) -> tuple[list[JobView], UUID | None]:
        return await list_jobs(
            principal=principal, status=status, file_id=file_id, before_id=before_id, limit=limit
        )

    async def output(self, *, principal: Principal, job_id: UUID, name: str) -> OutputBlob:
        """One output of a job the caller may read: its blob key, size and type."""
        job = await get_job(principal=principal, job_id=job_id)
        key = job.outputs.get(name)
        described = job.metadata.get("output_files", {}).get(name)
        if key is None or not isinstance(described, dict):
            raise NotFound("render_output_not_found", "The job has no such output")
        return OutputBlob(
            name=name,
            key=key,
            size=int(described["size"]),
            content_type=str(described["content_type"]),
        )
