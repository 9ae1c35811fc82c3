"""Inspect a finished upload: what its bytes are (`storage.sniff`), and whether an archive is
safe to open (`storage.archives`). All file reading happens in a worker thread.

A blob of the local store is read where it lies; any other store's blob (S3) is first copied
to a temporary file, streamed a chunk at a time (memory stays flat), because a zip is read
from its end and sniffing needs random access.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

from storage.archives import ArchiveLimits, UnsafeArchive
from storage.blobs import BlobStore
from storage.blobs.local import LocalBlobStore
from storage.sniff import FileTypeMismatch, FileTypeNotAllowed, TypeInfo, sniff_file

__all__ = [
    "FileTypeMismatch",
    "FileTypeNotAllowed",
    "TypeInfo",
    "UnsafeArchive",
    "inspect_blob",
]

_COPY_BATCH = 1024 * 1024


async def inspect_blob(
    *,
    store: BlobStore,
    key: str,
    size: int,
    filename: str,
    claimed_type: str | None,
    archive_limits: ArchiveLimits | None = None,
) -> TypeInfo:
    """The kind, MIME type and facts of the blob `key` (`size` bytes) uploaded as `filename`
    with the client's declared type `claimed_type`. Raises `FileTypeMismatch`,
    `FileTypeNotAllowed` (415) or `UnsafeArchive` (422); `BlobNotFoundError` when there is no
    such blob."""
    async with _local_file(store, key) as path:
        return await asyncio.to_thread(
            sniff_file,
            path,
            filename=filename,
            claimed_type=claimed_type,
            archive_limits=archive_limits,
        )


@contextlib.asynccontextmanager
async def _local_file(store: BlobStore, key: str) -> AsyncIterator[Path]:
    if isinstance(store, LocalBlobStore):
        yield store.path_of(key)
        return
    fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix="inspect-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            async with aclosing(await store.open(key)) as chunks:
                batch = bytearray()
                async for chunk in chunks:
                    batch += chunk
                    if len(batch) >= _COPY_BATCH:
                        await asyncio.to_thread(file.write, batch)
                        batch = bytearray()
                if batch:
                    await asyncio.to_thread(file.write, batch)
        yield path
    finally:
        await asyncio.shield(asyncio.to_thread(path.unlink, missing_ok=True))
