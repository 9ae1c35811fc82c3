"""A real `ideinstein serve` process is killed (SIGKILL) in the middle of a PATCH; a new one
answers HEAD with the bytes that are on disk, takes the rest and makes the file version."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import aiohttp
import pytest

from core.secret_key import signing_key
from core.tokens import KeyRing
from db.connection import open_database
from db.models.files import FileVersion
from tests.identity import sign_in
from tests.processes import ServeProcess, start_serve
from tests.tus import OCTETS, TusClient, sha256, stl

SECRET = "tus-restart-secret-tus-restart-secret-42"
MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(migrated_database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": migrated_database_url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path / "var"),
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _sizes(uploads: Path) -> list[int]:
    return [p.stat().st_size for p in uploads.glob("*")] if uploads.exists() else []


async def _temp_size(uploads: Path, at_least: int) -> int:
    """Until the server has written `at_least` bytes of the upload to its temp file."""
    async with asyncio.timeout(20):
        while True:
            sizes = await asyncio.to_thread(_sizes, uploads)
            if sizes and sizes[0] >= at_least:
                return sizes[0]
            await asyncio.sleep(0.02)  # the server is still writing


async def test_an_upload_survives_a_killed_server(
    env: dict[str, str],
    tmp_path: Path,
    migrated_database_url: str,
    session: aiohttp.ClientSession,
) -> None:
    account = await sign_in(migrated_database_url, KeyRing(current=signing_key(SECRET)))
    data = stl(5 * MB, seed=77)
    first = await start_serve(port=_free_port(), env=env, workdir=tmp_path, name="first")
    second: ServeProcess | None = None
    try:
        tus = TusClient(session, account.token, base=first.url)
        location = await tus.create(len(data), filename="survivor.stl")
        reader, writer = await asyncio.open_connection("127.0.0.1", first.port)
        writer.write(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{first.port}\r\n"
                f"Authorization: Bearer {account.token}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: {OCTETS}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[: 3 * MB]
        )
        await writer.drain()  # the connection stays open: the server waits for the rest
        on_disk = await _temp_size(tmp_path / "var" / "blobs" / ".uploads", 2 * MB)
        await first.kill()
        writer.close()
        del reader

        second = await start_serve(port=_free_port(), env=env, workdir=tmp_path, name="second")
        tus.base = second.url
        offset = await tus.offset(location)
        assert 2 * MB <= on_disk <= offset <= 3 * MB
        headers = await tus.resume(location, data)
    finally:
        await first.kill()
        if second is not None:
            await second.kill()

    async with open_database(migrated_database_url):
        version = await FileVersion.get(file_id=UUID(headers["X-File-Id"]))
    assert (version.blob_key, version.size, version.number) == (sha256(data), len(data), 1)
    assert list((tmp_path / "var" / "blobs" / ".uploads").iterdir()) == []
