"""tus on the S3 backend (moto_server on loopback): single-PUT and multipart uploads, a resume
by a process that did not begin the upload (its sha256 rebuilt by reading the object back),
termination and expiry aborting the multipart upload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient
from types_aiobotocore_s3.client import S3Client

from api.app import create_app
from api.keys import KEYS, SETTINGS, UPLOADS
from core.clock import utcnow
from db.models.files import FileVersion, Upload
from tests.conftest import SettingsFactory
from tests.identity import sign_in
from tests.s3 import (
    MotoServer,
    aws_environment,
)
from tests.tus import TusClient, handled_patches, patch_and_drop, sha256, stl, wait_for_patches

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
MB = 1024 * 1024


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    moto: MotoServer,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> TestClient[Any, Any]:
    for name, value in aws_environment(moto).items():
        monkeypatch.setenv(name, value)
    settings = make_settings(database_url=migrated_database_url, storage_url=f"s3://{bucket}/blobs")
    return await aiohttp_client(create_app(settings))


async def _tus(client: TestClient[Any, Any]) -> TusClient:
    account = await sign_in(client.app[SETTINGS].database_url, client.app[KEYS])
    return TusClient(client, account.token)


async def _objects(s3: S3Client, bucket: str) -> list[str]:
    listed = await s3.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def _multiparts(s3: S3Client, bucket: str) -> list[str]:
    listed = await s3.list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


def _spools(row: Upload) -> list[Path]:
    base = Path(row.backend_state["store"]["spool_base"])
    return sorted(base.parent.glob(base.name + ".*"))


async def test_a_small_upload_with_a_dropped_patch_lands_under_its_sha256(
    client: TestClient[Any, Any], s3: S3Client, bucket: str
) -> None:
    tus = await _tus(client)
    data = stl(300 * 1024, seed=1)
    location = await tus.create(len(data))
    handled = handled_patches(client.app)
    await patch_and_drop(
        str(client.make_url("/")), location, tus.token, offset=0, total=data, send=100_000
    )
    await wait_for_patches(client.app, handled + 1)

    headers = await tus.resume(location, data)

    version = await FileVersion.get(file_id=UUID(headers["X-File-Id"]))
    assert version.blob_key == sha256(data)
    assert await _objects(s3, bucket) == [f"blobs/{sha256(data)}"]
    body = await (await s3.get_object(Bucket=bucket, Key=f"blobs/{sha256(data)}"))["Body"].read()
    assert body == data
    assert await _multiparts(s3, bucket) == []


async def test_a_multipart_upload_resumed_by_another_process_is_hashed_by_reading_back(
    client: TestClient[Any, Any], s3: S3Client, bucket: str
) -> None:
    tus = await _tus(client)
    data = stl(9 * MB, seed=2)  # the store's parts are 8 MiB: one part, then the rest
    location = await tus.create(len(data))
    assert (await tus.patch(location, 0, data[: 8 * MB + 1000])).status == 204
    row = await Upload.get(id=UUID(location.rpartition("/")[2]))
    assert await _multiparts(s3, bucket) == [
        f"blobs/.uploads/{row.backend_state['store']['upload_id']}"
    ]
    client.app[UPLOADS].handles.forget()  # as after a restart: the handle and its sha256 are gone

    assert await tus.offset(location) == 8 * MB + 1000  # resumed: one part + the spool
    headers = await tus.resume(location, data, chunk=4 * MB)

    version = await FileVersion.get(file_id=UUID(headers["X-File-Id"]))
    assert (version.blob_key, version.size) == (sha256(data), len(data))
    assert await _objects(s3, bucket) == [f"blobs/{sha256(data)}"]
    assert await _multiparts(s3, bucket) == []
    assert _spools(row) == []


async def test_termination_and_expiry_abort_the_multipart_upload(
    client: TestClient[Any, Any], s3: S3Client, bucket: str
) -> None:
    tus = await _tus(client)
    data = stl(9 * MB, seed=3)
    terminated = await tus.create(len(data))
    expired = await tus.create(len(data))
    for location in (terminated, expired):
        assert (await tus.patch(location, 0, data[: 8 * MB + 10])).status == 204
    rows = [await Upload.get(id=UUID(x.rpartition("/")[2])) for x in (terminated, expired)]
    assert len(await _multiparts(s3, bucket)) == 2
    assert all(_spools(row) for row in rows)

    assert (await client.delete(terminated, headers=tus.auth)).status == 204
    assert len(await _multiparts(s3, bucket)) == 1
    assert _spools(rows[0]) == []
    client.app[UPLOADS].handles.forget()  # expiry of an upload no process holds
    removed = await client.app[UPLOADS].remove_expired(now=utcnow() + timedelta(days=2))

    assert removed == 1
    assert await _multiparts(s3, bucket) == []
    assert _spools(rows[1]) == []
    assert await _objects(s3, bucket) == []
    assert await Upload.all().count() == 0
