"""The files issue end to end through the real parts: a tus upload into the app, type sniffing,
the real clamd scanning it, a new version and a rollback, a password share link downloaded by
a stranger, the render farm's previews, and EICAR quarantined; on local disk and on S3."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import BUS, KEYS
from core.bus import Event
from tests.cad_samples import cad_sample
from tests.clamd import ClamdServer, run_clamd
from tests.conftest import SettingsFactory
from tests.identity import SignedIn, sign_in
from tests.s3 import (
    MotoServer,
)
from tests.tus import TusClient, metadata

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    with run_clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


class Events:
    """Every bus event of the app under test, to wait on instead of sleeping."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.changed = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self.changed:
            self.seen.append(event)
            self.changed.notify_all()

    async def wait(self, event_type: str, timeout: float = 60, **match: Any) -> Event:
        def found() -> Event | None:
            for event in self.seen:
                if event.type == event_type and all(
                    event.data.get(k) == v for k, v in match.items()
                ):
                    return event
            return None

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: found() is not None)
        event = found()
        assert event is not None
        return event


async def _started(
    aiohttp_client: ClientFactory, settings: Any
) -> tuple[TestClient[Any, Any], Events]:
    client = await aiohttp_client(create_app(settings))
    events = Events()
    await client.app[BUS].subscribe("*", events)
    return client, events


async def _upload(
    client: TestClient[Any, Any], who: SignedIn, data: bytes, **meta: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    tus = TusClient(client, who.token)
    location = await tus.create(len(data), meta=metadata(**meta))
    response = await tus.patch(location, 0, data)
    body: dict[str, Any] = {}
    if response.status != 204:
        body = await response.json() if response.content_type == "application/json" else {}
    return response.status, dict(response.headers), body


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    assert response.status == status, (response.status, await response.text())
    return await response.json()


async def test_upload_scan_version_share_render_and_quarantine_on_disk(
    aiohttp_client: ClientFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    clamd: ClamdServer,
) -> None:
    settings = make_settings(database_url=migrated_database_url, clamd_url=clamd.url)
    client, events = await _started(aiohttp_client, settings)
    owner = await sign_in(settings.database_url, client.app[KEYS])
    first = cad_sample("angle_block.STL").read_bytes()

    # Given a part uploaded through tus
    status, headers, _ = await _upload(client, owner, first, filename="angle_block.stl")
    assert status == 204
    file_id = headers["X-File-Id"]
    assert headers["X-File-Version"] == "1"

    # Then the real clamd scans it clean and the render farm makes its previews
    scanned = await events.wait("file.scanned", file_id=file_id, version=1)
    assert scanned.data["status"] == "clean"
    rendered = await events.wait("render.completed", file_id=file_id, timeout=120)
    job = await _json(
        await client.get(f"/api/v1/render-jobs/{rendered.data['job_id']}", headers=owner.headers)
    )
    assert job["status"] == "succeeded"
    assert job["metadata"]["triangles"] > 0
    detail = await _json(await client.get(f"/api/v1/files/{file_id}", headers=owner.headers))
    assert detail["current"]["scan_status"] == "clean"
    assert detail["current"]["sha256"] == hashlib.sha256(first).hexdigest()

    # When a second version lands on the same file and the first is restored
    changed = b"second version".ljust(80, b" ") + first[80:]
    status, headers, _ = await _upload(
        client, owner, changed, filename="angle_block.stl", file_id=file_id
    )
    assert (status, headers["X-File-Id"], headers["X-File-Version"]) == (204, file_id, "2")
    await events.wait("file.scanned", file_id=file_id, version=2)
    restored = await _json(
        await client.post(f"/api/v1/files/{file_id}/versions/1/restore", headers=owner.headers),
        201,
    )
    assert restored["number"] == 3
    assert restored["restored_from"] == 1
    versions = await _json(
        await client.get(f"/api/v1/files/{file_id}/versions", headers=owner.headers)
    )
    assert [v["number"] for v in versions["items"]] == [3, 2, 1]

    # Then a password share link serves the restored bytes to a stranger, and logs it
    share = await _json(
        await client.post(
            f"/api/v1/files/{file_id}/shares",
            json={"password": "correct horse battery", "max_downloads": 2},
            headers=owner.headers,
        ),
        201,
    )
    path = f"/api/v1/s/{share['token']}/download"
    refused = await client.get(path, headers={"X-Share-Password": "wrong password!"})
    assert refused.status in (401, 403)
    download = await client.get(path, headers={"X-Share-Password": "correct horse battery"})
    assert download.status == 200
    assert hashlib.sha256(await download.read()).hexdigest() == hashlib.sha256(first).hexdigest()
    log = await _json(
        await client.get(
            f"/api/v1/files/{file_id}/shares/{share['share']['id']}/accesses",
            headers=owner.headers,
        )
    )
    assert {a["outcome"] for a in log["items"]} >= {"wrong_password", "ok"}

    # And EICAR is quarantined: never downloadable, a security event for staff
    status, headers, _ = await _upload(client, owner, EICAR, filename="readme.txt")
    assert status == 204
    infected_id = headers["X-File-Id"]
    infected = await events.wait("file.scanned", file_id=infected_id)
    assert infected.data["status"] == "infected"
    await events.wait("security.event", kind="file_infected", file_id=infected_id)
    blocked = await client.get(f"/api/v1/files/{infected_id}/download", headers=owner.headers)
    assert blocked.status == 423
    assert (await blocked.json())["error"]["code"] == "file_quarantined"


async def test_a_pdf_named_stl_is_refused_and_nothing_is_kept(
    aiohttp_client: ClientFactory, settings: Any
) -> None:
    client, _ = await _started(aiohttp_client, settings)
    owner = await sign_in(settings.database_url, client.app[KEYS])
    pdf = b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 40 + b"%%EOF\n"

    status, _, body = await _upload(client, owner, pdf, filename="bracket.stl")

    assert status == 415
    assert body["error"]["code"] == "file_type_mismatch"
    listing = await _json(await client.get("/api/v1/files", headers=owner.headers))
    assert listing["items"] == []


@pytest.fixture
def s3_settings(
    make_settings: SettingsFactory,
    migrated_database_url: str,
    aws_env: MotoServer,
    bucket: str,
    clamd: ClamdServer,
) -> Any:
    return make_settings(
        database_url=migrated_database_url, storage_url=f"s3://{bucket}", clamd_url=clamd.url
    )


@pytest.mark.databases("sqlite")
async def test_on_s3_an_upload_is_scanned_and_downloaded_through_a_presigned_url(
    aiohttp_client: ClientFactory, s3_settings: Any
) -> None:
    client, events = await _started(aiohttp_client, s3_settings)
    owner = await sign_in(s3_settings.database_url, client.app[KEYS])
    data = cad_sample("angle_block.STL").read_bytes()

    status, headers, _ = await _upload(client, owner, data, filename="angle_block.stl")
    assert status == 204
    file_id = headers["X-File-Id"]
    scanned = await events.wait("file.scanned", file_id=file_id)
    assert scanned.data["status"] == "clean"

    redirect = await client.get(
        f"/api/v1/files/{file_id}/download", headers=owner.headers, allow_redirects=False
    )
    assert redirect.status == 302
    async with aiohttp.ClientSession() as http, http.get(redirect.headers["Location"]) as got:
        assert got.status == 200
        assert hashlib.sha256(await got.read()).hexdigest() == hashlib.sha256(data).hexdigest()
