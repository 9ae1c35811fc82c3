"""LocalBlobStore on a temporary folder: the blob contract, atomic writes, flat memory."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from storage.blobs import (
    BlobNotFoundError,
    InvalidKeyError,
    StoredBlob,
    UploadClosedError,
    create_blob_store,
)
from storage.blobs.base import content_disposition
from storage.blobs.local import LocalBlobStore
from tests.blobs import (
    StreamBrokeError,
    failing_stream,
    pattern,
    pieces,
    read_all,
    repeated,
    repeated_digest,
    sha256,
    stream,
)
from tests.conftest import SettingsFactory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
async def store(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_put_stores_the_bytes_under_their_sha256(store: LocalBlobStore, root: Path) -> None:
    data = pattern(300_000)

    blob = await store.put_stream(stream(data), size_hint=len(data))

    key = sha256(data)
    assert blob == StoredBlob(key=key, size=len(data))
    assert stored_files(root) == [root / key[:2] / key[2:4] / key]
    assert await read_all(store, key) == data
    assert await store.exists(key)


async def test_an_empty_stream_is_a_blob_too(store: LocalBlobStore) -> None:
    blob = await store.put_stream(stream(b""), size_hint=0)

    assert blob == StoredBlob(key=sha256(b""), size=0)
    assert await read_all(store, blob.key) == b""


async def test_identical_content_is_stored_once(store: LocalBlobStore, root: Path) -> None:
    data = pattern(100_000, seed=1)

    first = await store.put_stream(stream(data, chunk=1000), size_hint=None)
    second = await store.put_stream(stream(data, chunk=7777), size_hint=None)

    assert first == second
    assert stored_files(root) == [store.path_of(first.key)]


async def test_delete_removes_the_blob_and_tolerates_a_missing_one(
    store: LocalBlobStore, root: Path
) -> None:
    blob = await store.put_stream(stream(b"bye"), size_hint=3)

    await store.delete(blob.key)
    await store.delete(blob.key)

    assert not await store.exists(blob.key)
    assert stored_files(root) == []
    with pytest.raises(BlobNotFoundError):
        await store.open(blob.key)


async def test_keys_that_are_not_sha256_are_refused(store: LocalBlobStore) -> None:
    for key in ("../../etc/passwd", "A" * 64, "ab", sha256(b"x") + "/"):
        with pytest.raises(InvalidKeyError):
            await store.exists(key)
        with pytest.raises(InvalidKeyError):
            await store.open(key)


async def test_local_blobs_have_no_direct_url(store: LocalBlobStore) -> None:
    blob = await store.put_stream(stream(b"abc"), size_hint=3)

    assert await store.url(blob.key, expires=60, filename="a.stl") is None


async def test_an_upload_in_many_pieces_becomes_one_blob(store: LocalBlobStore, root: Path) -> None:
    data = pattern(3_000_000, seed=2)
    handle = await store.begin_upload()

    for piece in pieces(data, 7):
        size = await store.append(handle, stream(piece, chunk=4093))
        assert size == handle.size
    blob = await store.complete(handle)

    assert blob == StoredBlob(key=sha256(data), size=len(data))
    assert await read_all(store, blob.key) == data
    assert stored_files(root) == [store.path_of(blob.key)]  # no upload file left


async def test_abort_leaves_nothing(store: LocalBlobStore, root: Path) -> None:
    handle = await store.begin_upload()
    await store.append(handle, stream(pattern(2_500_000, seed=3)))

    await store.abort(handle)
    await store.abort(handle)

    assert stored_files(root) == []
    with pytest.raises(UploadClosedError):
        await store.append(handle, stream(b"more"))
    with pytest.raises(UploadClosedError):
        await store.complete(handle)


async def test_a_stream_failing_midway_leaves_no_partial_blob(
    store: LocalBlobStore, root: Path
) -> None:
    data = pattern(4_000_000, seed=4)

    with pytest.raises(StreamBrokeError):
        await store.put_stream(failing_stream(data, fail_after=2_500_000), size_hint=len(data))

    assert stored_files(root) == []
    assert not await store.exists(sha256(data))


async def test_a_cancelled_put_leaves_no_partial_blob(store: LocalBlobStore, root: Path) -> None:
    started = asyncio.Event()

    async def slow() -> object:
        yield pattern(2_000_000, seed=5)
        started.set()
        await asyncio.sleep(60)
        yield b"never"

    task = asyncio.create_task(store.put_stream(slow(), size_hint=None))  # type: ignore[arg-type]
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert stored_files(root) == []


async def test_a_failed_piece_keeps_the_bytes_before_it(store: LocalBlobStore) -> None:
    data = pattern(3_000_000, seed=6)
    handle = await store.begin_upload()

    with pytest.raises(StreamBrokeError):
        await store.append(handle, failing_stream(data, fail_after=1_000_000))
    received = handle.size
    await store.append(handle, stream(data[received:]))
    blob = await store.complete(handle)

    assert received > 0
    assert blob == StoredBlob(key=sha256(data), size=len(data))


async def test_memory_stays_flat_for_a_50_mb_stream(store: LocalBlobStore) -> None:
    block = pattern(64 * 1024, seed=7)
    count = 50 * 16  # 50 MiB

    tracemalloc.start()
    try:
        blob = await store.put_stream(repeated(block, count), size_hint=len(block) * count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert blob == StoredBlob(key=repeated_digest(block, count), size=len(block) * count)
    assert peak < 6 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


async def test_storage_url_file_makes_a_local_store(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    store = create_blob_store(make_settings(storage_url=f"file://{tmp_path}/elsewhere"))

    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "elsewhere"
    async with store:
        blob = await store.put_stream(stream(b"settings"), size_hint=None)
    assert (tmp_path / "elsewhere" / blob.key[:2] / blob.key[2:4] / blob.key).read_bytes() == (
        b"settings"
    )


def test_content_disposition_keeps_the_exact_name_and_an_ascii_fallback() -> None:
    assert content_disposition(None) == "attachment"
    assert content_disposition('pl"ate\u00e9.stl') == (
        "attachment; filename=\"pl_ate_.stl\"; filename*=UTF-8''pl%22ate%C3%A9.stl"
    )
