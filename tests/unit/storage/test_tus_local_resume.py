"""The local store's resumable state: another store object (a restarted process) goes on with
an upload from `export_state`, with its sha256 rebuilt from the temp file."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.blobs import UploadClosedError
from storage.blobs.local import LocalBlobStore
from tests.blobs import pattern, read_all, sha256, stream

MB = 1024 * 1024


async def test_a_resumed_upload_completes_under_the_right_key(tmp_path: Path) -> None:
    data = pattern(3 * MB + 123, seed=1)
    before = LocalBlobStore(tmp_path)
    handle = await before.begin_upload()
    await before.append(handle, stream(data[: 2 * MB + 7]))
    state = before.export_state(handle)
    assert state == {"upload_id": handle.upload_id, "size": 2 * MB + 7}

    after = LocalBlobStore(tmp_path)  # a new process: nothing in memory
    resumed = await after.resume_upload(state)
    assert (resumed.size, resumed.digest_valid) == (2 * MB + 7, True)
    await after.append(resumed, stream(data[2 * MB + 7 :]))
    blob = await after.complete(resumed)

    assert (blob.key, blob.size) == (sha256(data), len(data))
    assert await read_all(after, blob.key) == data
    assert list(after.uploads.iterdir()) == []


async def test_the_offset_is_what_the_temp_file_holds(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    handle = await store.begin_upload()
    await store.append(handle, stream(b"a" * 1000))
    state = store.export_state(handle)
    await store.append(handle, stream(b"b" * 500))  # arrived after the state was saved

    resumed = await LocalBlobStore(tmp_path).resume_upload(state)

    assert resumed.size == 1500


async def test_a_discarded_or_unknown_upload_cannot_be_resumed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    handle = await store.begin_upload()
    await store.append(handle, stream(b"x" * 100))
    state = store.export_state(handle)

    await store.discard_upload(state)
    await store.discard_upload(state)  # twice is fine

    assert list(store.uploads.iterdir()) == []
    with pytest.raises(UploadClosedError):
        await store.resume_upload(state)
    for bad in ({}, {"upload_id": "../../etc/passwd"}, {"upload_id": "A" * 32}):
        with pytest.raises(UploadClosedError):
            await store.resume_upload(bad)
