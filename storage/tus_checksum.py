"""A PATCH with `Upload-Checksum`: its body is spilled to a temporary file while it is hashed
(in threads, one batch in memory), and only a body that matches is appended."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

from storage.blobs import BlobStore, UploadHandle
from storage.blobs.base import BATCH_SIZE
from storage.tus_protocol import Checksum, ChecksumMismatch


async def append_verified(
    *,
    store: BlobStore,
    handle: UploadHandle,
    body: AsyncIterator[bytes],
    checksum: Checksum,
    spill_dir: Path,
    cut_off: Callable[[], bool],
) -> bool:
    """Append `body` if it matches `checksum` (else `ChecksumMismatch`, nothing appended).
    Returns False, appending nothing, when `cut_off()` says the caller cut the body short
    (it was longer than the upload may take: none of it is kept)."""
    await asyncio.to_thread(spill_dir.mkdir, parents=True, exist_ok=True)
    spill = await asyncio.to_thread(_open_spill, spill_dir)
    try:
        digest = checksum.new_hash()
        batch = bytearray()
        async for chunk in body:
            batch += chunk
            if len(batch) >= BATCH_SIZE:
                await asyncio.to_thread(_spill, spill, digest, bytes(batch))
                batch.clear()
        if batch:
            await asyncio.to_thread(_spill, spill, digest, bytes(batch))
        if cut_off():
            return False
        if digest.digest() != checksum.digest:
            raise ChecksumMismatch()
        await asyncio.to_thread(spill.seek, 0)
        await store.append(handle, _read_spill(spill))
        return True
    finally:
        await asyncio.shield(asyncio.to_thread(spill.close))


def _open_spill(directory: Path) -> IO[bytes]:
    return tempfile.TemporaryFile(dir=directory)


def _spill(file: IO[bytes], digest: hashlib._Hash, data: bytes) -> None:
    file.write(data)
    digest.update(data)


async def _read_spill(file: IO[bytes]) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(file.read, BATCH_SIZE):
        yield block
