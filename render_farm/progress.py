"""Progress of one job: stored on its row and announced on the bus as `render.progress`.

Monotonic: a report that would move the job backwards (or sideways at the same percent) is
dropped, so listeners see stages and percentages only ever go forward.
"""

from __future__ import annotations

from uuid import UUID

from redis.exceptions import RedisError

from core.bus import EventBus
from core.logs import get_logger
from render_farm.jobs import record_progress

log = get_logger(__name__)


class ProgressReporter:
    def __init__(
        self, *, bus: EventBus, job_id: UUID, file_id: UUID, version_id: UUID, owner_id: UUID
    ) -> None:
        self._bus = bus
        self._job_id = job_id
        self._file_id = file_id
        self._version_id = version_id
        self._owner_id = owner_id
        self.stage = ""
        self.progress = -1

    async def report(self, stage: str, progress: int) -> None:
        progress = max(0, min(100, progress))
        if progress < self.progress or (progress == self.progress and stage == self.stage):
            return
        self.stage, self.progress = stage, progress
        if not await record_progress(self._job_id, stage=stage, progress=progress):
            return
        try:
            await self._bus.emit(
                "render.progress",
                {
                    "job_id": str(self._job_id),
                    "file_id": str(self._file_id),
                    "version_id": str(self._version_id),
                    "owner_id": str(self._owner_id),
                    "progress": progress,
                    "stage": stage,
                },
                subject=f"file:{self._file_id}",
            )
        except (RedisError, OSError) as exc:  # news only: the row has the progress
            log.warning("render.progress_not_sent", job_id=str(self._job_id), error=str(exc))
