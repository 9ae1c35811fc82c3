"""S3BlobStore against a real S3 server (moto_server on loopback): the blob contract, real
multipart uploads, server-side copies, presigned downloads."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from types_aiobotocore_s3.client import S3Client

from storage.blobs import BlobNotFoundError, StoredBlob, create_blob_store
from storage.blobs.s3 import MIN_PART_SIZE, S3BlobStore, S3Upload
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
from tests.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    MotoServer,
    aws_environment,
)

MB = 1024 * 1024


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


def make_store(moto: MotoServer, bucket: str, spool: Path, **options: int) -> S3BlobStore:
    return S3BlobStore(
        bucket,
        "blobs",
        endpoint_url=moto.endpoint_url,
        region_name=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        part_size=MIN_PART_SIZE,
        spool_dir=spool,
        **options,
    )


@pytest.fixture
async def store(moto: MotoServer, bucket: str, spool: Path) -> AsyncIterator[S3BlobStore]:
    async with make_store(moto, bucket, spool) as store:
        yield store


def spooled_files(spool: Path) -> list[Path]:
    return list(spool.iterdir())


async def object_keys(s3: S3Client, bucket: str) -> list[str]:
    listing = await s3.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


async def multipart_uploads(s3: S3Client, bucket: str) -> list[str]:
    listing = await s3.list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


async def test_put_stores_the_bytes_under_their_sha256(
    store: S3BlobStore, s3: S3Client, bucket: str, spool: Path
) -> None:
    data = pattern(300_000)

    blob = await store.put_stream(stream(data), size_hint=len(data))

    assert blob == StoredBlob(key=sha256(data), size=len(data))
    assert await object_keys(s3, bucket) == [f"blobs/{blob.key}"]
    assert await read_all(store, blob.key) == data
    assert await store.exists(blob.key)
    assert spooled_files(spool) == []


async def test_a_12_mb_upload_goes_in_parts_of_5_mb_and_more(
    store: S3BlobStore, s3: S3Client, bucket: str, spool: Path
) -> None:
    data = pattern(12 * MB, seed=1)
    handle = await store.begin_upload(size_hint=len(data))

    for piece in pieces(data, 9):
        await store.append(handle, stream(piece, chunk=10_000))
    assert await multipart_uploads(s3, bucket) == [handle.temp_key]
    blob = await store.complete(handle)

    assert isinstance(handle, S3Upload)
    assert len(handle.parts) == 3  # 5 MiB + 5 MiB + the rest (a batch may top a part up)
    assert blob == StoredBlob(key=sha256(data), size=len(data))
    assert await object_keys(s3, bucket) == [f"blobs/{blob.key}"]
    assert await multipart_uploads(s3, bucket) == []
    assert await read_all(store, blob.key) == data
    assert spooled_files(spool) == []


async def test_identical_content_is_stored_once(
    store: S3BlobStore, s3: S3Client, bucket: str
) -> None:
    small, large = pattern(1000, seed=2), pattern(11 * MB, seed=3)

    first = [await store.put_stream(stream(d), size_hint=None) for d in (small, large)]
    second = [
        await store.put_stream(stream(d, chunk=33_333), size_hint=None) for d in (small, large)
    ]

    assert first == second
    assert await object_keys(s3, bucket) == sorted(f"blobs/{b.key}" for b in first)
    assert await multipart_uploads(s3, bucket) == []


async def test_abort_removes_the_multipart_upload(
    store: S3BlobStore, s3: S3Client, bucket: str, spool: Path
) -> None:
    handle = await store.begin_upload()
    await store.append(handle, stream(pattern(7 * MB, seed=4)))
    assert await multipart_uploads(s3, bucket) == [handle.temp_key]

    await store.abort(handle)
    await store.abort(handle)

    assert await multipart_uploads(s3, bucket) == []
    assert await object_keys(s3, bucket) == []
    assert spooled_files(spool) == []


async def test_a_stream_failing_midway_leaves_nothing(
    store: S3BlobStore, s3: S3Client, bucket: str, spool: Path
) -> None:
    data = pattern(12 * MB, seed=5)

    with pytest.raises(StreamBrokeError):
        await store.put_stream(failing_stream(data, fail_after=11 * MB), size_hint=len(data))

    assert await multipart_uploads(s3, bucket) == []
    assert await object_keys(s3, bucket) == []
    assert spooled_files(spool) == []


async def test_delete_and_missing_blobs(store: S3BlobStore, s3: S3Client, bucket: str) -> None:
    blob = await store.put_stream(stream(b"bye"), size_hint=3)

    await store.delete(blob.key)
    await store.delete(blob.key)

    assert not await store.exists(blob.key)
    assert await object_keys(s3, bucket) == []
    with pytest.raises(BlobNotFoundError):
        await store.open(blob.key)


async def test_a_presigned_url_downloads_the_bytes_with_the_file_name(store: S3BlobStore) -> None:
    data = pattern(2 * MB, seed=6)
    blob = await store.put_stream(stream(data), size_hint=len(data))

    url = await store.url(blob.key, expires=300, filename="Bracket v2 \u2013 final.step")

    assert url is not None
    assert url.startswith(f"{store.client.meta.endpoint_url}/{store.bucket}/blobs/{blob.key}?")
    assert "X-Amz-Signature=" in url
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == data
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="Bracket v2 _ final.step"; '
            "filename*=UTF-8''Bracket%20v2%20%E2%80%93%20final.step"
        )


async def test_blobs_beyond_the_copy_limit_are_copied_in_parts(
    moto: MotoServer, bucket: str, spool: Path, s3: S3Client
) -> None:
    data = pattern(12 * MB, seed=7)

    async with make_store(moto, bucket, spool, copy_threshold=MB) as store:
        blob = await store.put_stream(stream(data), size_hint=len(data))

        assert await read_all(store, blob.key) == data
    assert await object_keys(s3, bucket) == [f"blobs/{blob.key}"]
    assert await multipart_uploads(s3, bucket) == []


async def test_storage_url_s3_reads_the_standard_aws_variables(
    make_settings: SettingsFactory,
    moto: MotoServer,
    bucket: str,
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in aws_environment(moto).items():
        monkeypatch.setenv(name, value)

    store = create_blob_store(make_settings(storage_url=f"s3://{bucket}/tenant/files"))
    async with store:
        blob = await store.put_stream(stream(b"via settings"), size_hint=None)

    assert isinstance(store, S3BlobStore)
    assert await object_keys(s3, bucket) == [f"tenant/files/{blob.key}"]


async def test_memory_is_bounded_by_the_part_size_not_the_stream(store: S3BlobStore) -> None:
    block = pattern(64 * 1024, seed=8)
    count = 30 * 16  # 30 MiB: six parts

    tracemalloc.start()
    try:
        blob = await store.put_stream(repeated(block, count), size_hint=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert blob == StoredBlob(key=repeated_digest(block, count), size=len(block) * count)
    assert peak < 4 * store.part_size, f"peak {peak / MB:.1f} MiB"


async def test_a_large_size_hint_makes_parts_larger(store: S3BlobStore) -> None:
    huge = await store.begin_upload(size_hint=200 * 1024**3)
    unknown = await store.begin_upload(size_hint=None)

    assert isinstance(huge, S3Upload)
    assert isinstance(unknown, S3Upload)
    assert huge.part_size == -(-200 * 1024**3 // 10_000)
    assert unknown.part_size == store.part_size
    await store.abort(huge)
    await store.abort(unknown)
