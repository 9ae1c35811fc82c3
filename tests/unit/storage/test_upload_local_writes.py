"""The local store's pipelined appends: batches written and hashed in a worker thread while the
next is gathered, big uploads synced and dropped from the page cache as they go, and what is
left when the stream, the caller or the disk fails midway."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.blobs import StoredBlob, UploadClosedError, local
from storage.blobs.local import LocalBlobStore
from tests.blobs import pattern, sha256, stream

MB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def temp_file_size(store: LocalBlobStore, upload_id: str) -> int:
    return (store.uploads / upload_id).stat().st_size


async def test_a_big_upload_is_synced_behind_and_resumes_from_what_is_on_disk(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "SYNC_STEP", 256 * 1024)
    data = pattern(5 * MB + 333, seed=11)
    handle = await store.begin_upload()

    await store.append(handle, stream(data[: 3 * MB + 5], chunk=100_003))
    assert isinstance(handle, local.LocalUpload)
    synced_first = handle.synced
    state = store.export_state(handle)

    again = LocalBlobStore(store.root)  # a restarted process goes on from the temp file
    resumed = await again.resume_upload(state)
    await again.append(resumed, stream(data[3 * MB + 5 :], chunk=65_536))
    blob = await again.complete(resumed)

    assert 0 < synced_first <= 3 * MB + 5
    assert blob == StoredBlob(key=sha256(data), size=len(data))
    assert again.path_of(blob.key).read_bytes() == data


async def test_pieces_in_a_reused_buffer_are_stored_as_they_were(store: LocalBlobStore) -> None:
    data = pattern(2 * MB + 50_000, seed=12)

    async def reused_buffer() -> AsyncIterator[bytes]:
        buffer = bytearray(50_000)
        for start in range(0, len(data), len(buffer)):
            buffer[:] = data[start : start + len(buffer)]
            yield buffer  # type: ignore[misc]  # refilled after the consumer took it

    blob = await store.put_stream(reused_buffer(), size_hint=len(data))

    assert blob == StoredBlob(key=sha256(data), size=len(data))


async def test_a_cancelled_append_writes_what_arrived(store: LocalBlobStore) -> None:
    data = pattern(3 * MB + 1, seed=13)
    stalled = asyncio.Event()

    async def stalls_after_data() -> AsyncIterator[bytes]:
        async for piece in stream(data):
            yield piece
        stalled.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    handle = await store.begin_upload()
    task = asyncio.create_task(store.append(handle, stalls_after_data()))
    await asyncio.wait_for(stalled.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert handle.size == len(data) == temp_file_size(store, handle.upload_id)
    blob = await store.complete(handle)
    assert blob == StoredBlob(key=sha256(data), size=len(data))


async def test_a_temp_file_gone_is_an_error_not_a_new_file(store: LocalBlobStore) -> None:
    handle = await store.begin_upload()
    (store.uploads / handle.upload_id).unlink()  # removed behind the upload's back

    with pytest.raises(FileNotFoundError):
        await store.append(handle, stream(pattern(2 * MB, seed=14)))

    assert handle.closed
    assert list(store.uploads.iterdir()) == []
    with pytest.raises(UploadClosedError):
        await store.append(handle, stream(b"more"))


async def test_a_failed_sync_closes_the_upload(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "SYNC_STEP", 256 * 1024)

    def broken_disk(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", broken_disk)
    handle = await store.begin_upload()

    with pytest.raises(OSError, match="Input/output error"):
        await store.append(handle, stream(pattern(4 * MB, seed=15)))

    assert handle.closed
    with pytest.raises(UploadClosedError):
        await store.complete(handle)
