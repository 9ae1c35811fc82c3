"""Blobs on local disk: `<root>/<aa>/<bb>/<sha256>`, written through a temporary file in
`<root>/.uploads` (same filesystem), fsynced, then renamed into place atomically. Readers never
see a partial blob. All file I/O runs in worker threads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncGenerator
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

UPLOADS_DIR = ".uploads"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(eq=False)
class LocalUpload(UploadHandle):
    path: Path = Path()


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

    async def _write(self, handle: UploadHandle, data: bytearray) -> None:
        await asyncio.to_thread(self._append_sync, self._own(handle), data)

    @staticmethod
    def _append_sync(handle: LocalUpload, data: bytearray) -> None:
        with handle.path.open("ab") as file:
            file.write(data)
        handle.digest.update(data)

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


async def _read_chunks(path: Path, key: str) -> AsyncGenerator[bytes, None]:
    try:
        file = await _open_for_reading(path)
    except FileNotFoundError:  # removed since `open` looked
        raise BlobNotFoundError(key) from None
    try:
        while chunk := await asyncio.to_thread(file.read, READ_SIZE):
            yield chunk
    finally:
        file.close()


async def _open_for_reading(path: Path) -> BinaryIO:
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
