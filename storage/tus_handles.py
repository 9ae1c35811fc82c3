"""The blob store handles of the uploads this process is writing.

A handle (with its running sha256) is used again by the next PATCH of the same upload as long
as the row says nobody went on with the upload since: `backend_state["holder"]` is the token of
the process that last took the upload over, and the offset matches. Otherwise the handle is
resumed from the store's exported state (another process wrote meanwhile, or this one is new
after a restart). Call `get` with the upload's lock held.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from uuid import UUID

from core.logs import get_logger
from db.models.files import Upload, UploadState
from storage.blobs import BlobStore, UploadClosedError, UploadHandle
from storage.tus_protocol import UploadGone

log = get_logger(__name__)


@dataclass
class _Live:
    holder: str
    handle: UploadHandle


class LiveHandles:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._live: dict[UUID, _Live] = {}

    def forget(self) -> None:
        """Drop every handle (what a restart does; tests use it to act as a new process)."""
        self._live.clear()

    def pop(self, upload_id: UUID) -> UploadHandle | None:
        live = self._live.pop(upload_id, None)
        return live.handle if live is not None else None

    def is_stale(self, row: Upload) -> bool:
        live = self._live.get(row.id)
        return (
            live is None
            or live.holder != row.backend_state.get("holder")
            or live.handle.closed
            or live.handle.size != row.offset
        )

    async def get(self, row: Upload) -> UploadHandle:
        """This process's handle of the upload: kept, resumed or begun. A resumed upload's
        offset becomes the bytes the store really has (saved to the row)."""
        if not self.is_stale(row):
            return self._live[row.id].handle
        self._live.pop(row.id, None)
        store_state = row.backend_state.get("store")
        if isinstance(store_state, dict):
            try:
                handle = await self.store.resume_upload(store_state)
            except UploadClosedError:
                row.state = UploadState.FAILED
                row.error_code = "upload_lost"
                row.reserved_bytes = 0
                await row.save()
                raise UploadGone("upload_lost", "The upload's bytes are gone") from None
            if handle.size != row.offset:
                log.info(
                    "tus.offset_resumed", upload_id=str(row.id), was=row.offset, now=handle.size
                )
        else:
            handle = await self.store.begin_upload(size_hint=row.length)
        holder = secrets.token_hex(8)
        self._live[row.id] = _Live(holder=holder, handle=handle)
        row.offset = handle.size
        row.backend_state = {"store": self.store.export_state(handle), "holder": holder}
        await row.save(update_fields=["offset", "backend_state", "updated_at"])
        return handle
