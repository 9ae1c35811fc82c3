"""Downloads on the S3 backend (moto_server): the app answers 302 to a presigned URL that
serves the bytes with the file's name; refusals (scan, authorization) still come first."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import KEYS, SETTINGS
from db.models.files import ScanStatus
from tests.conftest import SettingsFactory
from tests.documents import add_version, app_of
from tests.identity import sign_in
from tests.s3 import (
    MotoServer,
    aws_environment,
    client_options,
)

Client = TestClient[Any, Any]


@pytest.fixture
async def s3_client(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    for name, value in aws_environment(moto).items():
        monkeypatch.setenv(name, value)
    bucket = f"files-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client("s3", **client_options(moto)) as s3:
        await s3.create_bucket(Bucket=bucket)
    settings = make_settings(database_url=migrated_database_url, storage_url=f"s3://{bucket}/blobs")
    client: Client = await aiohttp_client(create_app(settings))
    return client


@pytest.mark.databases("sqlite")
async def test_s3_downloads_redirect_to_a_presigned_url(
    s3_client: Client, moto: MotoServer
) -> None:
    client = s3_client
    keys = app_of(client)[KEYS]
    database_url = app_of(client)[SETTINGS].database_url
    owner = await sign_in(database_url, keys)
    stranger = await sign_in(database_url, keys)
    version = await add_version(
        client, owner_id=owner.user_id, data=b"solid part", name="Part 1.stl", kind="stl"
    )
    file_id = version.file_id  # type: ignore[attr-defined]

    response = await client.get(
        f"/api/v1/files/{file_id}/versions/1/download",
        headers=owner.headers,
        allow_redirects=False,
    )
    assert response.status == 302
    assert response.headers["Cache-Control"] == "private, no-store"
    location = response.headers["Location"]
    assert location.startswith(moto.endpoint_url)
    assert "X-Amz-Signature=" in location or "Signature=" in location
    async with aiohttp.ClientSession() as http, http.get(location) as direct:
        assert direct.status == 200
        assert await direct.read() == b"solid part"
        assert "Part%201.stl" in direct.headers["Content-Disposition"]

    share = await client.post(f"/api/v1/files/{file_id}/shares", json={}, headers=owner.headers)
    token = (await share.json())["token"]
    shared = await client.get(f"/api/v1/s/{token}/download", allow_redirects=False)
    assert shared.status == 302
    assert shared.headers["Location"].startswith(moto.endpoint_url)

    probe = await client.get(
        f"/api/v1/files/{file_id}/download", headers=stranger.headers, allow_redirects=False
    )
    assert probe.status == 404
    pending = await add_version(
        client, owner_id=owner.user_id, data=b"new", file_id=file_id, scan_status=ScanStatus.PENDING
    )
    refused = await client.get(
        f"/api/v1/files/{file_id}/versions/{pending.number}/download",
        headers=owner.headers,
        allow_redirects=False,
    )
    assert (refused.status, (await refused.json())["error"]["code"]) == (409, "file_not_scanned")
