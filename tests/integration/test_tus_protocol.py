"""tus 1.0.0 at /api/v1/uploads/: the core protocol and every extension, good and bad paths,
through the real app, the real finisher (type sniffing, file versions) and the local store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import BLOBS, KEYS, SETTINGS, UPLOADS
from core.clock import utcnow
from db.models.files import File, FileVersion, Upload, UploadState
from storage.blobs.local import LocalBlobStore
from tests.conftest import SettingsFactory
from tests.identity import SignedIn, sign_in
from tests.tus import OCTETS, TUS, TusClient, checksum, metadata, sha256, stl

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
KB = 1024


async def _account(client: TestClient[Any, Any]) -> SignedIn:
    return await sign_in(client.app[SETTINGS].database_url, client.app[KEYS])


async def _tus(client: TestClient[Any, Any]) -> TusClient:
    return TusClient(client, (await _account(client)).token)


def _temp_files(client: TestClient[Any, Any]) -> list[Path]:
    store = client.app[BLOBS]
    assert isinstance(store, LocalBlobStore)
    return sorted(store.uploads.iterdir()) if store.uploads.exists() else []


async def _row(location: str) -> Upload:
    return await Upload.get(id=UUID(location.rpartition("/")[2]))


async def _stored(client: TestClient[Any, Any], key: str) -> bytes:
    store = client.app[BLOBS]
    assert isinstance(store, LocalBlobStore)
    return store.path_of(key).read_bytes()


# Discovery and the version header


async def test_options_advertises_the_server_without_a_token(
    client: TestClient[Any, Any],
) -> None:
    response = await client.options("/api/v1/uploads/")

    assert response.status == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Extension"] == (
        "creation,creation-with-upload,creation-defer-length,expiration,checksum,"
        "termination,concatenation"
    )
    assert response.headers["Tus-Max-Size"] == str(500 * 1024 * 1024)
    assert response.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"


@pytest.mark.parametrize("version", [None, "0.2.2"])
async def test_requests_without_tus_resumable_1_0_0_get_412(
    client: TestClient[Any, Any], version: str | None
) -> None:
    tus = await _tus(client)
    location = await tus.create(100)
    headers = {"Authorization": f"Bearer {tus.token}"}
    if version:
        headers["Tus-Resumable"] = version

    created = await client.post("/api/v1/uploads/", headers={**headers, "Upload-Length": "5"})
    head = await client.head(location, headers=headers)
    patch = await client.patch(
        location, data=b"abc", headers={**headers, "Upload-Offset": "0", "Content-Type": OCTETS}
    )
    delete = await client.delete(location, headers=headers)

    for response in (created, head, patch, delete):
        assert response.status == 412
        assert response.headers["Tus-Version"] == "1.0.0"
        assert response.headers["Tus-Resumable"] == "1.0.0"
    assert (created_body := await created.json())["error"]["code"] == "tus_version_unsupported"
    assert created_body["error"]["code"] == "tus_version_unsupported"
    assert await Upload.all().count() == 1
    assert (await _row(location)).offset == 0


async def test_a_request_without_a_token_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})

    assert response.status == 401
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert await Upload.all().count() == 0


# Core protocol and creation


async def test_an_upload_in_two_patches_becomes_a_file_version(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = stl(150 * KB, seed=1)
    before = utcnow()
    created = await client.post(
        "/api/v1/uploads/",
        headers={
            **tus.auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(filename="bracket.stl", filetype="model/stl"),
        },
    )
    assert created.status == 201
    location = created.headers["Location"]
    assert location.startswith("/api/v1/uploads/")
    expires = parsedate_to_datetime(created.headers["Upload-Expires"])
    assert before + timedelta(seconds=86_399) <= expires <= utcnow() + timedelta(seconds=86_401)

    head = await tus.head(location)
    assert head.status == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Upload-Metadata"] == metadata(filename="bracket.stl", filetype="model/stl")
    assert head.headers["Cache-Control"] == "no-store"

    first = await tus.patch(location, 0, data[: 100 * KB])
    assert first.status == 204
    assert first.headers["Upload-Offset"] == str(100 * KB)
    assert "Upload-Expires" in first.headers
    assert "X-File-Id" not in first.headers
    assert await tus.offset(location) == 100 * KB

    last = await tus.patch(location, 100 * KB, data[100 * KB :])
    assert last.status == 204
    assert last.headers["Upload-Offset"] == str(len(data))
    file_id = UUID(last.headers["X-File-Id"])
    assert last.headers["X-File-Version"] == "1"

    version = await FileVersion.get(file_id=file_id)
    assert (version.number, version.blob_key, version.size) == (1, sha256(data), len(data))
    assert (version.kind, version.original_name) == ("stl", "bracket.stl")
    assert (await File.get(id=file_id)).name == "bracket.stl"
    assert await _stored(client, sha256(data)) == data
    assert _temp_files(client) == []
    status = await tus.status(location)
    assert status["state"] == "complete"
    assert status["offset"] == status["length"] == len(data)
    assert status["file_id"] == str(file_id)
    assert status["version"] == 1
    assert status["error_code"] == ""
    row = await _row(location)
    assert row.reserved_bytes == 0


async def test_patch_at_the_wrong_offset_is_409_and_changes_nothing(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = stl(20 * KB)
    location = await tus.create(len(data))
    assert (await tus.patch(location, 0, data[:5000])).status == 204

    for wrong in (0, 4999, 5001):
        response = await tus.patch(location, wrong, data[wrong : wrong + 100])
        assert response.status == 409
        assert (await response.json())["error"]["code"] == "offset_mismatch"

    assert await tus.offset(location) == 5000
    assert [p.stat().st_size for p in _temp_files(client)] == [5000]


async def test_patch_without_the_offset_content_type_is_415(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    location = await tus.create(1000)

    response = await tus.patch(location, 0, b"x" * 100, **{"Content-Type": "text/plain"})

    assert response.status == 415
    assert await tus.offset(location) == 0
    assert [p.stat().st_size for p in _temp_files(client)] == []


async def test_malformed_creation_headers_are_400(client: TestClient[Any, Any]) -> None:
    tus = await _tus(client)
    cases: list[dict[str, str]] = [
        {},
        {"Upload-Length": "-1"},
        {"Upload-Length": "ten"},
        {"Upload-Length": "10", "Upload-Defer-Length": "1"},
        {"Upload-Defer-Length": "2"},
        {"Upload-Length": "10", "Upload-Metadata": "filename !!notbase64"},
        {"Upload-Length": "10", "Upload-Metadata": metadata(folder_id="nope")},
        {"Upload-Concat": "final;"},
    ]
    for extra in cases:
        response = await client.post("/api/v1/uploads/", headers={**tus.auth, **extra})
        assert response.status == 400, extra
    assert await Upload.all().count() == 0


async def test_someone_elses_upload_is_not_found(client: TestClient[Any, Any]) -> None:
    owner = await _tus(client)
    location = await owner.create(1000)
    assert (await owner.patch(location, 0, b"a" * 10)).status == 204
    stranger = await _tus(client)

    responses = [
        await stranger.head(location),
        await stranger.patch(location, 10, b"b" * 10),
        await client.delete(location, headers=stranger.auth),
        await client.get(location, headers=stranger.auth),
        await owner.head(f"/api/v1/uploads/{UUID(int=7)}"),
        await owner.head("/api/v1/uploads/not-a-uuid"),
    ]

    assert [r.status for r in responses] == [404] * 6
    assert (await responses[3].json())["error"]["code"] == "upload_not_found"
    assert await owner.offset(location) == 10


async def test_creation_with_upload_writes_the_body_at_once(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = stl(40 * KB, seed=2)
    partial = await client.post(
        "/api/v1/uploads/",
        data=data[:10_000],
        headers={**tus.auth, "Upload-Length": str(len(data)), "Content-Type": OCTETS},
    )
    assert partial.status == 201
    assert partial.headers["Upload-Offset"] == "10000"
    whole = await client.post(
        "/api/v1/uploads/",
        data=stl(30 * KB, seed=3),
        headers={
            **tus.auth,
            "Upload-Length": str(len(stl(30 * KB, seed=3))),
            "Content-Type": OCTETS,
            "Upload-Metadata": metadata(filename="whole.stl"),
        },
    )

    async def chunked() -> Any:  # no Content-Length
        yield data[:5000]
        yield data[5000:8000]

    streamed = await client.post(
        "/api/v1/uploads/",
        data=chunked(),
        headers={**tus.auth, "Upload-Length": str(len(data)), "Content-Type": OCTETS},
    )

    assert whole.status == 201
    assert whole.headers["X-File-Version"] == "1"
    assert (await File.get(id=UUID(whole.headers["X-File-Id"]))).name == "whole.stl"
    assert await tus.offset(partial.headers["Location"]) == 10_000
    assert streamed.status == 201
    assert streamed.headers["Upload-Offset"] == "8000"


async def test_deferred_length_is_declared_by_a_later_patch(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = stl(50 * KB, seed=4)
    location = await tus.create(None)
    head = await tus.head(location)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers

    assert (await tus.patch(location, 0, data[:20_000])).status == 204
    lower = await tus.patch(location, 20_000, b"", **{"Upload-Length": "100"})
    assert lower.status == 400
    done = await tus.patch(location, 20_000, data[20_000:], **{"Upload-Length": str(len(data))})

    assert done.status == 204
    assert done.headers["X-File-Version"] == "1"
    assert (await tus.head(location)).headers["Upload-Length"] == str(len(data))
    version = await FileVersion.get(file_id=UUID(done.headers["X-File-Id"]))
    assert version.blob_key == sha256(data)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
async def test_checksums_are_verified_before_bytes_are_added(
    client: TestClient[Any, Any], algorithm: str
) -> None:
    tus = await _tus(client)
    data = stl(3 * 1024 * KB, seed=5)  # several spill batches
    location = await tus.create(len(data))
    half = len(data) // 2

    good = await tus.patch(
        location, 0, data[:half], **{"Upload-Checksum": checksum(algorithm, data[:half])}
    )
    bad = await tus.patch(
        location, half, data[half:], **{"Upload-Checksum": checksum(algorithm, b"other")}
    )
    unknown = await tus.patch(location, half, data[half:], **{"Upload-Checksum": "md5 AAAA"})

    assert good.status == 204
    assert bad.status == 460
    assert (await bad.json())["error"]["code"] == "checksum_mismatch"
    assert unknown.status == 400
    assert (await unknown.json())["error"]["code"] == "checksum_algorithm_unsupported"
    assert await tus.offset(location) == half
    assert [p.stat().st_size for p in _temp_files(client)] == [half]
    last = await tus.patch(
        location, half, data[half:], **{"Upload-Checksum": checksum(algorithm, data[half:])}
    )
    assert last.status == 204
    assert await _stored(client, sha256(data)) == data


async def test_termination_removes_the_upload_and_its_bytes(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    location = await tus.create(10_000)
    assert (await tus.patch(location, 0, b"z" * 4000)).status == 204
    assert len(_temp_files(client)) == 1

    deleted = await client.delete(location, headers=tus.auth)

    assert deleted.status == 204
    assert (await tus.head(location)).status == 404
    assert (await tus.patch(location, 4000, b"z")).status == 404
    assert _temp_files(client) == []
    assert await Upload.all().count() == 0


async def test_partial_uploads_concatenate_into_one_file(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = stl(90 * KB, seed=6)
    pieces = [data[:30_000], data[30_000:70_000], data[70_000:]]
    partial = {"Upload-Concat": "partial"}
    locations = [await tus.create(len(p), extra=partial) for p in pieces]
    assert (await tus.head(locations[0])).headers["Upload-Concat"] == "partial"
    for location, piece in zip(locations[:2], pieces[:2], strict=True):
        assert (await tus.patch(location, 0, piece)).status == 204
    final_headers = {
        **tus.auth,
        "Upload-Concat": "final;" + " ".join(locations),
        "Upload-Metadata": metadata(filename="joined.stl"),
    }

    unfinished = await client.post("/api/v1/uploads/", headers=final_headers)
    assert unfinished.status == 400
    assert (await unfinished.json())["error"]["code"] == "partial_upload_unfinished"
    no_file = await tus.patch(locations[2], 0, pieces[2])
    assert no_file.status == 204
    assert "X-File-Id" not in no_file.headers  # a partial upload never becomes a file
    assert await File.all().count() == 0
    final = await client.post("/api/v1/uploads/", headers=final_headers)

    assert final.status == 201
    assert final.headers["X-File-Version"] == "1"
    version = await FileVersion.get(file_id=UUID(final.headers["X-File-Id"]))
    assert (version.blob_key, version.size) == (sha256(data), len(data))
    assert await _stored(client, sha256(data)) == data
    head = await tus.head(final.headers["Location"])
    assert head.headers["Upload-Concat"] == "final;" + " ".join(locations)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    patched = await tus.patch(final.headers["Location"], len(data), b"x")
    assert patched.status == 403
    for location in locations:  # the partial uploads were consumed
        assert (await tus.head(location)).status == 404
    for piece in pieces:
        assert not await client.app[BLOBS].exists(sha256(piece))


async def test_a_refused_file_fails_the_last_patch_and_leaves_no_blob(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = b"not a model at all " * 1000
    location = await tus.create(len(data), filename="fake.stl")

    response = await tus.patch(location, 0, data)

    assert response.status == 415
    assert (await response.json())["error"]["code"] == "file_type_mismatch"
    assert not await client.app[BLOBS].exists(sha256(data))
    status = await tus.status(location)
    assert (status["state"], status["error_code"]) == ("failed", "file_type_mismatch")
    assert status["file_id"] is None
    assert await File.all().count() == 0
    assert _temp_files(client) == []
    again = await tus.patch(location, len(data), b"")
    assert again.status == 409


async def test_empty_patches_one_after_another_keep_the_offset(
    client: TestClient[Any, Any],
) -> None:
    # An empty body is aiohttp's one shared EmptyStreamReader: reading it must end every time,
    # not only the first time in the process.
    tus = await _tus(client)
    data = stl(10 * KB, seed=21)
    location = await tus.create(len(data))

    first = await tus.patch(location, 0, b"")
    second = await tus.patch(location, 0, b"")
    finished = await tus.patch(location, 0, data)

    assert (first.status, first.headers["Upload-Offset"]) == (204, "0")
    assert (second.status, second.headers["Upload-Offset"]) == (204, "0")
    assert finished.status == 204
    assert await _stored(client, sha256(data)) == data


async def test_file_id_metadata_adds_a_version_and_is_checked(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    first = stl(10 * KB, seed=7)
    created = await client.post(
        "/api/v1/uploads/",
        data=first,
        headers={**tus.auth, "Upload-Length": str(len(first)), "Content-Type": OCTETS},
    )
    file_id = created.headers["X-File-Id"]
    second = stl(12 * KB, seed=8)
    location = await tus.create(len(second), meta=metadata(filename="part.stl", file_id=file_id))
    done = await tus.patch(location, 0, second)
    stranger = await _tus(client)
    refused = await client.post(
        "/api/v1/uploads/",
        headers={
            **stranger.auth,
            "Upload-Length": "100",
            "Upload-Metadata": metadata(filename="x.stl", file_id=file_id),
        },
    )

    assert (done.headers["X-File-Id"], done.headers["X-File-Version"]) == (file_id, "2")
    assert refused.status == 404
    assert (await refused.json())["error"]["code"] == "file_not_found"
    assert await Upload.filter(owner_id=UUID(int=0)).count() == 0
    assert await Upload.all().count() == 2


async def test_a_second_writer_on_the_same_upload_is_locked_out(
    client: TestClient[Any, Any],
) -> None:
    tus = await _tus(client)
    data = stl(200 * KB, seed=9)
    location = await tus.create(len(data))
    service = client.app[UPLOADS]
    upload_id = UUID(location.rpartition("/")[2])
    assert await service.locks.acquire(upload_id)  # as a PATCH in flight holds it
    try:
        locked = await tus.patch(location, 0, data[:1000])
        assert locked.status == 423
        assert (await locked.json())["error"]["code"] == "upload_locked"
        assert await tus.offset(location) == 0
    finally:
        await service.locks.release(upload_id)
    assert (await tus.patch(location, 0, data)).status == 204


# Limits: size, budget, expiry


@pytest.fixture
async def small_client(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> TestClient[Any, Any]:
    settings = make_settings(
        database_url=migrated_database_url,
        upload_max_bytes=64 * KB,
        upload_temp_budget_bytes=100 * KB,
    )
    return await aiohttp_client(create_app(settings))


async def test_the_size_limit_holds_on_creation_and_on_the_wire(
    small_client: TestClient[Any, Any],
) -> None:
    client = small_client
    tus = await _tus(client)
    too_big = await client.post(
        "/api/v1/uploads/", headers={**tus.auth, "Upload-Length": str(64 * KB + 1)}
    )
    assert too_big.status == 413
    assert (await too_big.json())["error"]["code"] == "upload_too_large"
    assert await Upload.all().count() == 0

    data = stl(20 * KB, seed=10)
    location = await tus.create(len(data))
    longer = await tus.patch(location, 0, data + b"extra")  # Content-Length says too much
    assert longer.status == 413
    assert await tus.offset(location) == 0

    async def chunked() -> Any:  # no Content-Length: cut off at the declared length
        yield data[:10_000]
        yield data[10_000:] + b"beyond"

    response = await client.patch(
        location,
        data=chunked(),
        headers={**tus.auth, "Upload-Offset": "0", "Content-Type": OCTETS},
    )
    assert response.status == 413
    assert await tus.offset(location) == len(data)
    assert [p.stat().st_size for p in _temp_files(client)] == [len(data)]
    finished = await tus.patch(location, len(data), b"")
    assert finished.status == 204
    assert finished.headers["X-File-Version"] == "1"
    assert await _stored(client, sha256(data)) == data

    deferred = await tus.create(None)
    assert (await tus.patch(deferred, 0, b"d" * 60 * KB)).status == 204
    over = await tus.patch(deferred, 60 * KB, b"d" * 5 * KB)
    assert over.status == 413
    assert await tus.offset(deferred) == 60 * KB


async def test_the_temporary_disk_budget_refuses_with_507(
    small_client: TestClient[Any, Any],
) -> None:
    client = small_client
    tus = await _tus(client)
    first_data = stl(60 * KB, seed=11)
    first = await tus.create(len(first_data))

    refused = await client.post(
        "/api/v1/uploads/", headers={**tus.auth, "Upload-Length": str(60 * KB)}
    )
    assert refused.status == 507
    assert (await refused.json())["error"]["code"] == "upload_budget_exceeded"
    assert await Upload.all().count() == 1

    deferred = await tus.create(None)  # reserves nothing until bytes come
    grown = await tus.patch(deferred, 0, b"g" * 30 * KB)
    assert grown.status == 204
    too_far = await tus.patch(deferred, 30 * KB, b"g" * 20 * KB)
    assert too_far.status == 507
    assert await tus.offset(deferred) == 30 * KB

    assert (await tus.patch(first, 0, first_data)).status == 204  # finishing frees its bytes
    assert (await Upload.get(id=UUID(first.rpartition("/")[2]))).reserved_bytes == 0
    again = await tus.patch(deferred, 30 * KB, b"g" * 20 * KB)
    assert again.status == 204


async def test_expired_uploads_are_gone_and_cleaned_up(client: TestClient[Any, Any]) -> None:
    tus = await _tus(client)
    stale = await tus.create(10_000)
    fresh = await tus.create(10_000)
    for location in (stale, fresh):
        assert (await tus.patch(location, 0, b"e" * 3000)).status == 204
    assert len(_temp_files(client)) == 2
    await Upload.filter(id=UUID(stale.rpartition("/")[2])).update(
        expires_at=utcnow() - timedelta(seconds=1)
    )

    gone = await tus.head(stale)
    assert gone.status == 410
    assert (await tus.patch(stale, 3000, b"e")).status == 410
    removed = await client.app[UPLOADS].remove_expired()

    assert removed == 1
    assert (await tus.head(stale)).status == 404
    assert await tus.offset(fresh) == 3000
    assert len(_temp_files(client)) == 1
    assert await Upload.all().count() == 1
    later = utcnow() + timedelta(days=2)
    assert await client.app[UPLOADS].remove_expired(now=later) == 1
    assert _temp_files(client) == []
    assert await Upload.filter(state=UploadState.ACTIVE).count() == 0
