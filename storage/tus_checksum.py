"""A PATCH with `Upload-Checksum`: its body is spilled to a temporary file while it is hashed,
and only a body that matches is appended. The spill is a pipeline of depth one: a worker
thread writes and hashes a batch of pieces (one `writev`, no copy) while the next batch is
gathered on the event loop (two batches in memory at most)."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

from storage.blobs import BlobStore, UploadHandle
from storage.blobs.base import BATCH_SIZE
from storage.blobs.piece_writes import MAX_PIECES, write_pieces
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
    loop = asyncio.get_running_loop()
    digest = checksum.new_hash()
    writing: asyncio.Future[None] | None = None
    try:
        batch: list[bytes] = []
        batched = 0
        async for chunk in body:
            batch.append(bytes(chunk))  # kept until written: a copy unless it is bytes already
            batched += len(chunk)
            if batched >= BATCH_SIZE or len(batch) >= MAX_PIECES:
                if writing is not None:
                    await asyncio.shield(writing)
                writing = loop.run_in_executor(None, _spill, spill, digest, batch)
                batch, batched = [], 0
        if writing is not None:
            await asyncio.shield(writing)
        writing = loop.run_in_executor(None, _spill, spill, digest, batch)
        await asyncio.shield(writing)
        writing = None
        if cut_off():
            return False
        if digest.digest() != checksum.digest:
            raise ChecksumMismatch()
        await asyncio.to_thread(spill.seek, 0)
        await store.append(handle, _read_spill(spill))
        return True
    finally:
        await asyncio.shield(_close_spill(spill, writing))


async def _close_spill(spill: IO[bytes], writing: asyncio.Future[None] | None) -> None:
    """Close the spill file once the thread writing to it (if any) is done."""
    if writing is not None:
        await asyncio.gather(writing, return_exceptions=True)
    await asyncio.to_thread(spill.close)


def _open_spill(directory: Path) -> IO[bytes]:
    return tempfile.TemporaryFile(dir=directory)


def _spill(file: IO[bytes], digest: hashlib._Hash, pieces: list[bytes]) -> None:
    """In a worker thread: the pieces to the end of the spill file, and into the digest."""
    write_pieces(file.fileno(), pieces)
    for piece in pieces:
        digest.update(piece)


async def _read_spill(file: IO[bytes]) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(file.read, BATCH_SIZE):
        yield block
