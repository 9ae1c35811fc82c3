"""Blobs on local disk: `<root>/<aa>/<bb>/<sha256>`, written through a temporary file in
`<root>/.uploads` (same filesystem), fsynced, then renamed into place atomically. Readers never
see a partial blob. All file I/O runs in worker threads.

An append is a pipeline of depth one: while a worker thread writes a batch of pieces (one
`writev`, no copy) and feeds them to the running sha256, the next batch is gathered from the
stream on the event loop. At most two batches (2 x `WRITE_BATCH`) are held per upload.

Big uploads are written behind: every `SYNC_STEP` bytes another worker thread syncs what was
written (`fdatasync`) and drops those pages from the page cache (`POSIX_FADV_DONTNEED`) while
the writes go on. The bytes are then on disk as they arrive (the final fsync has little left
to do), and a big upload does not push the page cache out; the pages freed are those the next
writes reuse (on a VM, pages the guest never touched cost a fault on the host each: writing
into them ran at a quarter of the speed).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from storage.blobs.base import (
    BATCH_SIZE,
    READ_SIZE,
    BlobNotFoundError,
    BlobStore,
    StoredBlob,
    UploadClosedError,
    UploadHandle,
    check_key,
)
from storage.blobs.piece_writes import MAX_PIECES, write_pieces

UPLOADS_DIR = ".uploads"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# Bytes gathered before a worker thread writes and hashes them (one thread hop each); a batch
# also ends at `MAX_PIECES` pieces (one writev takes at most IOV_MAX buffers). 1 MiB measured
# at least as fast as 2 and 4 MiB here (likely: the batch is still in the CPU cache when it is
# hashed after the write), and holds less.
WRITE_BATCH = BATCH_SIZE
SYNC_STEP = 64 * 1024 * 1024
_WRITE_BEHIND = hasattr(os, "fdatasync") and hasattr(os, "posix_fadvise")  # not on macOS


@dataclass(eq=False)
class LocalUpload(UploadHandle):
    path: Path = Path()
    synced: int = 0  # the bytes before this offset are on disk and out of the page cache


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.uploads = self.root / UPLOADS_DIR

    def path_of(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    async def begin_upload(self, *, size_hint: int | None = None) -> LocalUpload:
        handle = LocalUpload()
        handle.path = self.uploads / handle.upload_id
        await asyncio.to_thread(self._create, handle.path)
        return handle

    @staticmethod
    def _create(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=False)

    def _own(self, handle: UploadHandle) -> LocalUpload:
        if not isinstance(handle, LocalUpload) or handle.path.parent != self.uploads:
            raise UploadClosedError(f"upload {handle.upload_id} is not one of this store's")
        return handle

    async def append(self, handle: UploadHandle, chunks: AsyncIterator[bytes]) -> int:
        """Add a piece to an upload (pipelined: see the module's docstring); return the
        upload's size after it. If the stream fails midway (or the caller is cancelled), the
        bytes that did arrive are written before the error propagates: tus resumes from
        `size`. A failed write closes the handle (only `abort` is left)."""
        upload = self._own(handle)
        self._check_open(upload)
        writer = _Writer(upload)
        batch: list[bytes] = []
        try:
            batched = 0
            async for chunk in chunks:
                # Pieces are kept, not copied: a buffer the caller may reuse is copied.
                piece = chunk if type(chunk) is bytes else bytes(chunk)
                if not piece:
                    continue
                batch.append(piece)
                batched += len(piece)
                upload.size += len(piece)
                if batched >= WRITE_BATCH or len(batch) >= MAX_PIECES:
                    await writer.submit(batch)
                    batch, batched = [], 0
        finally:
            await asyncio.shield(writer.finish(batch))
        return upload.size

    async def _write(self, handle: UploadHandle, data: bytearray) -> None:
        writer = _Writer(self._own(handle))
        await asyncio.shield(writer.finish([bytes(data)]))

    def export_state(self, handle: UploadHandle) -> dict[str, Any]:
        upload = self._own(handle)
        return {"upload_id": upload.upload_id, "size": upload.size}

    def _temp_path(self, state: dict[str, Any]) -> Path:
        upload_id = str(state.get("upload_id", ""))
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadClosedError(f"not an upload id: {upload_id!r}")
        return self.uploads / upload_id

    async def resume_upload(self, state: dict[str, Any]) -> LocalUpload:
        """The temp file as it is: its size is the offset, its bytes are hashed again (in a
        thread) to rebuild the running sha256."""
        path = self._temp_path(state)
        handle = LocalUpload(upload_id=path.name, path=path)
        try:
            handle.size = await asyncio.to_thread(_hash_file, path, handle.digest)
        except FileNotFoundError:
            raise UploadClosedError(f"upload {path.name} has no bytes left") from None
        return handle

    async def discard_upload(self, state: dict[str, Any]) -> None:
        await asyncio.to_thread(self._temp_path(state).unlink, missing_ok=True)

    async def complete(self, handle: UploadHandle) -> StoredBlob:
        upload = self._own(handle)
        self._check_open(upload)
        upload.closed = True
        key = upload.digest.hexdigest()
        try:
            await asyncio.to_thread(self._commit, upload.path, self.path_of(key))
        except BaseException:
            await asyncio.shield(asyncio.to_thread(upload.path.unlink, missing_ok=True))
            raise
        return StoredBlob(key=key, size=upload.size)

    @staticmethod
    def _commit(source: Path, target: Path) -> None:
        if target.exists():  # the same content is already stored: keep the one copy
            source.unlink()
            return
        with source.open("rb+") as file:
            os.fsync(file.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        _fsync_dir(target.parent)

    async def abort(self, handle: UploadHandle) -> None:
        upload = self._own(handle)
        upload.closed = True
        upload.pending.clear()
        await asyncio.to_thread(upload.path.unlink, missing_ok=True)

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        path = self.path_of(key)
        if not await asyncio.to_thread(path.is_file):
            raise BlobNotFoundError(key)
        # The file is opened by the generator's first step, so a caller that never reads it
        # (a 304, a HEAD) leaves no open file behind.
        return _read_chunks(path, key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    async def url(self, key: str, *, expires: int, filename: str | None = None) -> str | None:
        check_key(key)
        return None  # the app streams local blobs itself


class _Writer:
    """The write side of one `append`. Batches go to a worker thread one at a time and in
    order (the sha256 must see them in order): `submit` waits for the batch in flight, then
    sends the next, so the caller gathers a batch while the thread writes the one before.
    Every `SYNC_STEP` bytes, another thread syncs what was written and drops it from the page
    cache, beside the writes (a slow disk does not hold them up). The first batch opens the
    file; `finish` writes the rest and closes it."""

    def __init__(self, upload: LocalUpload) -> None:
        self.upload = upload
        self.fd: int | None = None
        self.end = 0  # the file's size after the batches written (the fd appends)
        self.in_flight: asyncio.Future[None] | None = None
        self.syncing: asyncio.Future[None] | None = None

    async def submit(self, batch: list[bytes]) -> None:
        """Raises the previous batch's write error (or a failed sync's); a cancelled caller
        leaves that write going on (shielded), for `finish` to wait for."""
        if self.in_flight is not None:
            await asyncio.shield(self.in_flight)
            self.in_flight = None
            self._sync_behind()
        if batch:
            loop = asyncio.get_running_loop()
            self.in_flight = loop.run_in_executor(None, self._write, batch)

    def _sync_behind(self) -> None:
        """Start syncing what is written if a step's worth is not yet, unless a sync is still
        going on (the next batch looks again)."""
        if self.syncing is not None:
            if not self.syncing.done():
                return
            syncing, self.syncing = self.syncing, None
            syncing.result()  # a failed sync: the upload is closed, the error goes up
        if _WRITE_BEHIND and self.fd is not None and self.end - self.upload.synced >= SYNC_STEP:
            loop = asyncio.get_running_loop()
            self.syncing = loop.run_in_executor(None, self._sync, self.fd, self.end)

    async def finish(self, rest: list[bytes]) -> None:
        """Wait for the batch in flight and the sync, write `rest` (unless something failed)
        and close the file. Run it shielded: it must reach its end whatever happens to the
        caller."""
        loop = asyncio.get_running_loop()
        running = [f for f in (self.in_flight, self.syncing) if f is not None]
        self.in_flight = self.syncing = None
        # Both threads are done before the file is closed (or its number could be reused).
        outcomes = await asyncio.gather(*running, return_exceptions=True)
        try:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        finally:
            await loop.run_in_executor(None, self._write_last, rest)

    def _write(self, batch: list[bytes]) -> None:
        """In a worker thread: append the pieces (no copy), then hash them."""
        upload = self.upload
        try:
            if batch and not upload.closed:
                if self.fd is None:
                    self.fd = os.open(upload.path, os.O_WRONLY | os.O_APPEND)
                    self.end = os.fstat(self.fd).st_size
                self.end += write_pieces(self.fd, batch)
                for piece in batch:
                    upload.digest.update(piece)
        except BaseException:
            upload.closed = True  # its bytes and `size` no longer agree: only abort is left
            raise

    def _write_last(self, batch: list[bytes]) -> None:
        try:
            self._write(batch)
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def _sync(self, fd: int, end: int) -> None:
        """In a worker thread: the bytes before `end` to disk, then out of the page cache."""
        upload = self.upload
        try:
            os.fdatasync(fd)
        except BaseException:
            upload.closed = True  # what is on disk is not known: only abort is left
            raise
        start = min(upload.synced, end)
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
        upload.synced = end


async def _read_chunks(path: Path, key: str) -> AsyncGenerator[bytes, None]:
    try:
        file = await open_for_reading(path)
    except FileNotFoundError:  # removed since `open` looked
        raise BlobNotFoundError(key) from None
    try:
        while chunk := await asyncio.to_thread(file.read, READ_SIZE):
            yield chunk
    finally:
        file.close()


async def open_for_reading(path: Path) -> BinaryIO:
    """Open in a worker thread; if the caller is cancelled meanwhile, the file the thread
    opened anyway is closed, not leaked."""
    opening: asyncio.Future[BinaryIO] = asyncio.ensure_future(asyncio.to_thread(_open, path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


def _close_opened(opening: asyncio.Future[BinaryIO]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _hash_file(path: Path, digest: hashlib._Hash) -> int:
    size = 0
    with path.open("rb") as file:
        while block := file.read(BATCH_SIZE):
            digest.update(block)
            size += len(block)
    return size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
