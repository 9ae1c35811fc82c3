"""Resumable uploads (tus 1.0.0): the service behind `/api/v1/uploads/`.

The `Upload` row is the truth about an upload (offset, declared length, metadata, the blob
store's exported state, the temporary disk it holds); a process keeps the blob store's handle
of an upload it is writing (with its running sha256) and uses it again for the next PATCH as
long as the row says nobody else went on with the upload since (`backend_state["holder"]`).
Otherwise (another process, a restart) the handle is resumed from the exported state.

Bytes flow from the request to the blob store in chunks; a PATCH with `Upload-Checksum` is
first spilled to a temporary file and verified, so a mismatch adds nothing. When the last byte
is in, the blob is completed and handed to an `UploadFinisher`, which makes the file version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

from tortoise.exceptions import BaseORMException
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.errors import AppError, BadRequest
from core.logs import get_logger
from core.principal import Principal
from db.models.files import FileVersion, Upload, UploadKind, UploadState
from storage.blobs import BlobError, BlobStore, StoredBlob, UploadHandle
from storage.tus_checksum import append_verified
from storage.tus_handles import LiveHandles
from storage.tus_locks import UploadLocks, check_budget, is_postgres, reserve
from storage.tus_protocol import (
    Checksum,
    Concat,
    FinalUploadNotWritable,
    InvalidTusHeader,
    OffsetMismatch,
    UploadFinishedError,
    UploadGone,
    UploadNotFound,
    UploadTooLarge,
)
from storage.tus_types import (
    FinishedFile,
    UploadFinisher,
    UploadLimits,
    UploadView,
    target_of,
)

log = get_logger(__name__)

RESERVE_STEP = 8 * 1024 * 1024  # a deferred-length upload without Content-Length reserves so


class _Cut:
    """Set when a body brought more than the upload may take."""

    over = False


class TusService:
    def __init__(
        self,
        *,
        store: BlobStore,
        finisher: UploadFinisher,
        limits: UploadLimits,
        database_url: str,
        spill_dir: Path,
    ) -> None:
        self.store = store
        self.finisher = finisher
        self.limits = limits
        self.locks = UploadLocks(database_url)
        self.postgres = is_postgres(database_url)
        self.spill_dir = spill_dir
        self.handles = LiveHandles(store)

    async def close(self) -> None:
        await self.locks.close()

    # Creation

    async def create(
        self,
        *,
        principal: Principal,
        length: int | None,
        metadata: dict[str, str],
        concat: Concat | None,
    ) -> UploadView:
        """POST: a new upload (`length` None = deferred). A final concatenation is assembled
        and finished here (its partial uploads must be complete)."""
        if concat is not None and not concat.partial:
            return await self._concatenate(principal=principal, metadata=metadata, concat=concat)
        if length is not None and length > self.limits.max_bytes:
            raise UploadTooLarge(details={"max_bytes": self.limits.max_bytes})
        kind = UploadKind.PARTIAL if concat is not None else UploadKind.SINGLE
        if kind is UploadKind.SINGLE:
            folder_id, file_id = target_of(metadata)
            await self.finisher.check_target(
                principal=principal, folder_id=folder_id, file_id=file_id
            )
        row = await self._create_row(
            owner_id=principal.user_id, kind=kind, length=length, metadata=metadata, parts=[]
        )
        return await self.view(row)

    async def _create_row(
        self,
        *,
        owner_id: UUID,
        kind: UploadKind,
        length: int | None,
        metadata: dict[str, str],
        parts: list[str],
    ) -> Upload:
        reserve = length or 0
        async with in_transaction() as connection:
            await check_budget(
                connection,
                need=reserve,
                exclude=None,
                budget=self.limits.temp_budget_bytes,
                postgres=self.postgres,
            )
            return await Upload.create(
                owner_id=owner_id,
                kind=kind,
                length=length,
                metadata=metadata,
                parts=parts,
                reserved_bytes=reserve,
                expires_at=self._new_expiry(),
                using_db=connection,
            )

    # Reading

    async def describe(self, *, owner_id: UUID, upload_id: UUID) -> UploadView:
        """HEAD: the upload as the row says, after taking over an upload that no process is
        writing and this one does not hold (a restart): its offset is then the bytes the blob
        store really has."""
        row = await self._load(owner_id=owner_id, upload_id=upload_id)
        taking_over = (
            row.state is UploadState.ACTIVE
            and "store" in row.backend_state
            and self.handles.is_stale(row)
        )
        if taking_over and await self.locks.acquire(row.id):
            try:
                await row.refresh_from_db()
                if row.state is UploadState.ACTIVE:
                    await self.handles.get(row)
            finally:
                await asyncio.shield(self.locks.release(row.id))
        return await self.view(row)

    async def status(self, *, owner_id: UUID, upload_id: UUID) -> UploadView:
        """The row as it is (GET: also for expired, finished and failed uploads)."""
        row = await Upload.filter(id=upload_id, owner_id=owner_id).first()
        if row is None:
            raise UploadNotFound()
        return await self.view(row)

    async def view(self, row: Upload) -> UploadView:
        finished = None
        if row.file_version_id is not None:  # type: ignore[attr-defined]
            version = await FileVersion.filter(id=row.file_version_id).first()  # type: ignore[attr-defined]
            if version is not None:
                finished = FinishedFile(
                    file_id=version.file_id,  # type: ignore[attr-defined]
                    version_id=version.id,
                    version=version.number,
                )
        return UploadView(
            id=row.id,
            kind=row.kind,
            state=row.state,
            offset=row.offset,
            length=row.length,
            metadata=dict(row.metadata),
            parts=tuple(UUID(p) for p in row.parts),
            expires_at=row.expires_at if row.state is UploadState.ACTIVE else None,
            error_code=row.error_code,
            file=finished,
        )

    # Writing

    async def write(
        self,
        *,
        owner_id: UUID,
        upload_id: UUID,
        offset: int,
        body: AsyncIterator[bytes],
        content_length: int | None,
        length: int | None = None,
        checksum: Checksum | None = None,
    ) -> UploadView:
        """PATCH: append the body at `offset`. `length` declares a deferred upload's length.
        On a dropped connection the bytes that arrived stay (the error propagates)."""
        row = await self._load(owner_id=owner_id, upload_id=upload_id)
        if row.kind is UploadKind.FINAL:
            raise FinalUploadNotWritable()
        async with self.locks.hold(row.id):
            await row.refresh_from_db()
            if row.state is not UploadState.ACTIVE:
                raise UploadFinishedError()
            if offset != row.offset:
                raise OffsetMismatch(details={"offset": row.offset})
            handle = await self.handles.get(row)
            if offset != handle.size:  # the store had more or fewer bytes than recorded
                raise OffsetMismatch(details={"offset": handle.size})
            await self._declare_length(row, length)
            limit = (row.length if row.length is not None else self.limits.max_bytes) - offset
            if content_length is not None and content_length > limit:
                raise UploadTooLarge(details={"max_bytes": limit + offset})
            if row.length is None:
                await self._reserve(row, offset + (content_length or 0))
            cut = _Cut()
            try:
                if checksum is not None:
                    await append_verified(
                        store=self.store,
                        handle=handle,
                        body=self._guarded(row, body, limit, cut),
                        checksum=checksum,
                        spill_dir=self.spill_dir,
                        cut_off=lambda: cut.over,
                    )
                else:
                    await self.store.append(handle, self._guarded(row, body, limit, cut))
            finally:
                await asyncio.shield(self._record_progress(row, handle))
            if cut.over:
                raise UploadTooLarge(details={"max_bytes": limit + offset})
            if row.length is not None and row.offset == row.length:
                await self._finish(row, handle)
        return await self.view(row)

    async def _declare_length(self, row: Upload, length: int | None) -> None:
        if length is None:
            return
        if row.length is not None:
            if length != row.length:
                raise InvalidTusHeader("length_mismatch", "Upload-Length cannot change")
            return
        if length > self.limits.max_bytes:
            raise UploadTooLarge(details={"max_bytes": self.limits.max_bytes})
        if length < row.offset:
            raise InvalidTusHeader("length_mismatch", "Upload-Length is below the offset")
        await self._reserve(row, length)
        row.length = length
        await row.save(update_fields=["length", "updated_at"])

    async def _guarded(
        self, row: Upload, body: AsyncIterator[bytes], limit: int, cut: _Cut
    ) -> AsyncIterator[bytes]:
        """The body up to `limit` bytes, reserving budget ahead of a deferred upload's bytes."""
        taken = 0
        async for chunk in body:
            if taken + len(chunk) > limit:
                chunk = chunk[: limit - taken]
                cut.over = True
            if row.length is None and row.offset + taken + len(chunk) > row.reserved_bytes:
                wanted = row.offset + taken + len(chunk) + RESERVE_STEP
                await self._reserve(row, min(wanted, self.limits.max_bytes))
            taken += len(chunk)
            if chunk:
                yield chunk
            if cut.over:
                return

    async def _record_progress(self, row: Upload, handle: UploadHandle) -> None:
        if handle.closed:  # a write failed: the next request resumes from the store's state
            self.handles.pop(row.id)
            return
        row.offset = handle.size
        row.expires_at = self._new_expiry()
        row.backend_state = {**row.backend_state, "store": self.store.export_state(handle)}
        await row.save(update_fields=["offset", "expires_at", "backend_state", "updated_at"])

    async def _finish(self, row: Upload, handle: UploadHandle) -> None:
        """The last byte is in: complete the blob and hand it to the finisher (a partial
        upload keeps its blob for the final one)."""
        self.handles.pop(row.id)
        blob = await self.store.complete(handle)
        if row.kind is UploadKind.PARTIAL:
            row.state = UploadState.COMPLETE
            row.backend_state = {"blob_key": blob.key, "size": blob.size}
            row.reserved_bytes = 0
            row.completed_at = utcnow()
            await row.save()
            return
        await self._hand_over(row, blob)

    async def _hand_over(self, row: Upload, blob: StoredBlob) -> None:
        try:
            finished = await self.finisher.finish(upload=row, blob=blob)
        except AppError as exc:
            await self._drop_unreferenced(blob.key)
            row.state = UploadState.FAILED
            row.error_code = exc.code[:50]
            row.reserved_bytes = 0
            row.backend_state = {}
            row.completed_at = utcnow()
            await row.save()
            raise
        row.state = UploadState.COMPLETE
        row.file_version_id = finished.version_id
        row.reserved_bytes = 0
        row.backend_state = {}
        row.completed_at = utcnow()
        await row.save()

    async def _drop_unreferenced(self, key: str) -> None:
        if not await FileVersion.filter(blob_key=key).exists():
            await self.store.delete(key)

    # Concatenation

    async def _concatenate(
        self, *, principal: Principal, metadata: dict[str, str], concat: Concat
    ) -> UploadView:
        folder_id, file_id = target_of(metadata)
        await self.finisher.check_target(principal=principal, folder_id=folder_id, file_id=file_id)
        partials = await Upload.filter(id__in=concat.parts, owner_id=principal.user_id)
        by_id = {p.id: p for p in partials}
        now = utcnow()
        for part_id in concat.parts:
            part = by_id.get(part_id)
            if part is None or part.kind is not UploadKind.PARTIAL or part.expires_at < now:
                raise BadRequest("invalid_concat", f"{part_id} is not a partial upload of yours")
            if part.state is not UploadState.COMPLETE:
                raise BadRequest("partial_upload_unfinished", f"{part_id} is not complete")
        length = sum(by_id[p].length or 0 for p in concat.parts)
        if length > self.limits.max_bytes:
            raise UploadTooLarge(details={"max_bytes": self.limits.max_bytes})
        row = await self._create_row(
            owner_id=principal.user_id,
            kind=UploadKind.FINAL,
            length=length,
            metadata=metadata,
            parts=[str(p) for p in concat.parts],
        )
        async with self.locks.hold(row.id):
            handle = await self.store.begin_upload(size_hint=length)
            try:
                for part_id in concat.parts:
                    source = await self.store.open(by_id[part_id].backend_state["blob_key"])
                    async with contextlib.aclosing(source):
                        await self.store.append(handle, source)
                row.offset = handle.size
                blob = await self.store.complete(handle)
            except BaseException:
                await asyncio.shield(self.store.abort(handle))
                await asyncio.shield(self._release(row))
                raise
            await self._hand_over(row, blob)
            for part_id in concat.parts:
                await self._remove_partial(by_id[part_id])
        return await self.view(row)

    async def _release(self, row: Upload) -> None:
        row.reserved_bytes = 0
        row.state = UploadState.FAILED
        row.error_code = "concatenation_failed"
        await row.save()

    async def _remove_partial(self, part: Upload) -> None:
        await part.delete()
        key = part.backend_state.get("blob_key")
        if isinstance(key, str):
            await self._drop_unreferenced(key)

    # Termination and expiry

    async def terminate(self, *, owner_id: UUID, upload_id: UUID) -> None:
        """DELETE: drop the upload and its bytes (a finished upload's file stays)."""
        row = await Upload.filter(id=upload_id, owner_id=owner_id).first()
        if row is None:
            raise UploadNotFound()
        async with self.locks.hold(row.id):
            await self._discard(row)

    async def _discard(self, row: Upload) -> None:
        live = self.handles.pop(row.id)
        store_state = row.backend_state.get("store")
        if row.state is UploadState.ACTIVE:
            if live is not None:
                await self.store.abort(live)
            if isinstance(store_state, dict):
                await self.store.discard_upload(store_state)
        elif row.kind is UploadKind.PARTIAL:
            key = row.backend_state.get("blob_key")
            if isinstance(key, str):
                await self._drop_unreferenced(key)
        await row.delete()

    async def remove_expired(self, *, now: datetime | None = None) -> int:
        """Abort every unfinished upload (and unused partial upload) past its expiry; their
        rows are deleted. Uploads being written right now are left for the next round."""
        moment = now or utcnow()
        rows = await Upload.filter(expires_at__lt=moment, state=UploadState.ACTIVE)
        rows += await Upload.filter(
            expires_at__lt=moment, state=UploadState.COMPLETE, kind=UploadKind.PARTIAL
        )
        removed = 0
        for row in rows:
            if not await self.locks.acquire(row.id):
                continue
            try:
                await self._discard(row)
                removed += 1
            finally:
                await asyncio.shield(self.locks.release(row.id))
        if removed:
            log.info("tus.expired_removed", count=removed)
        return removed

    # Handles, budget, rows

    async def _load(self, *, owner_id: UUID, upload_id: UUID) -> Upload:
        row = await Upload.filter(id=upload_id, owner_id=owner_id).first()
        if row is None:
            raise UploadNotFound()
        if row.state is UploadState.ACTIVE and row.expires_at <= utcnow():
            raise UploadGone()
        return row

    async def _reserve(self, row: Upload, total: int) -> None:
        await reserve(row, total, budget=self.limits.temp_budget_bytes, postgres=self.postgres)

    def _new_expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.limits.expiry_seconds)


async def run_expiry_loop(service: TusService, *, interval: float) -> None:
    """Remove expired uploads every `interval` seconds until cancelled. A failed round (the
    database or the store unreachable) is logged and tried again at the next one."""
    while True:
        await asyncio.sleep(interval)
        try:
            await service.remove_expired()
        except (OSError, BaseORMException, BlobError) as exc:
            log.warning("tus.expiry_failed", error=repr(exc))
