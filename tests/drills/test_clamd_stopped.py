"""Fault drill: clamd stops while uploads keep coming, then comes back.

A real `ideinstein serve` scans with a real clamd (tests/clamd.py: test signatures, loopback).
While clamd is stopped, finished uploads stay `pending` (tried, refused, retried later), none
becomes `clean` and none is downloadable; when clamd is back on the same address, the worker
scans them by itself and the owner hears `file:scanned` for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

import tests.clamd
from core.tokens import KeyRing, signing_key
from db.connection import open_database
from db.models.files import FileVersion, ScanStatus
from tests.clamd import run_clamd
from tests.identity import SignedIn, sign_in
from tests.processes import ServeProcess, start_serve
from tests.sockets import HubClient
from tests.tus import TusClient, metadata

pytestmark = pytest.mark.databases("sqlite")

SECRET = "drill-secret-drill-secret-drill-secret-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clamd_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """Every clamd this test starts listens on the same port, as a restarted daemon would."""
    port = _free_port()
    monkeypatch.setattr(tests.clamd, "_free_port", lambda: port)
    return port


@pytest.fixture
def first_clamd(clamd_port: int, tmp_path: Path) -> Iterator[contextlib.ExitStack]:
    """clamd up before the hub starts (its readiness checks clamd); the test stops it."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(run_clamd(tmp_path / "clamd-1"))
        yield stack


@pytest.fixture
async def hub(
    migrated_database_url: str,
    clamd_port: int,
    first_clamd: contextlib.ExitStack,
    tmp_path: Path,
) -> AsyncIterator[ServeProcess]:
    env = {
        "DATABASE_URL": migrated_database_url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path / "var"),
        "CLAMD_URL": f"tcp://127.0.0.1:{clamd_port}",
        "SCAN_RETRY_SECONDS": "0.2",
    }
    served = await start_serve(port=_free_port(), env=env, workdir=tmp_path, name="hub")
    yield served
    await served.stop()


async def _upload(session: aiohttp.ClientSession, hub: ServeProcess, token: str, n: int) -> str:
    tus = TusClient(session, token, base=hub.url)
    data = f"drill upload {n}\n".encode() * 100
    location = await tus.create(len(data), meta=metadata(filename=f"notes-{n}.txt"))
    response = await tus.patch(location, 0, data)
    assert response.status == 204
    return str(response.headers["X-File-Id"])


async def _versions(database_url: str, file_ids: list[str]) -> list[FileVersion]:
    async with open_database(database_url):
        return await FileVersion.filter(file_id__in=file_ids).order_by("created_at")


async def test_uploads_wait_for_clamd_and_are_scanned_when_it_is_back(
    hub: ServeProcess,
    first_clamd: contextlib.ExitStack,
    migrated_database_url: str,
    tmp_path: Path,
) -> None:
    account: SignedIn = await sign_in(migrated_database_url, KeyRing(current=signing_key(SECRET)))
    owner = await HubClient().connect(hub.url, account.token)
    try:
        async with aiohttp.ClientSession() as session:
            # given a hub that scans: the first upload comes back clean
            first = await _upload(session, hub, account.token, 0)
            scanned = await owner.until("file:scanned", lambda e: e["file_id"] == first, timeout=20)
            assert scanned["status"] == "clean"
            first_clamd.close()

            # when clamd is stopped, uploads still finish, but stay pending
            waiting = [await _upload(session, hub, account.token, n) for n in range(1, 4)]
            for _ in range(100):  # bounded: 10 s for the worker's first attempts
                versions = await _versions(migrated_database_url, waiting)
                if all(v.scan_attempts >= 1 for v in versions):
                    break
                await asyncio.sleep(0.1)  # another process's retries: only the clock tells
            versions = await _versions(migrated_database_url, waiting)
            assert [v.scan_status for v in versions] == [ScanStatus.PENDING] * 3
            assert all(v.scan_attempts >= 1 and v.next_scan_at is not None for v in versions)
            assert owner.pending("file:scanned") == []
            async with session.get(
                f"{hub.url}/api/v1/files/{waiting[0]}/download", headers=account.headers
            ) as refused:
                assert refused.status >= 400  # never served unscanned

            # when clamd is back on the same address, every waiting upload is scanned
            with run_clamd(tmp_path / "clamd-2"):
                heard: dict[str, str] = {}
                while set(heard) != set(waiting):
                    event = await owner.next("file:scanned", timeout=30)
                    heard[event["file_id"]] = event["status"]
                assert heard == dict.fromkeys(waiting, "clean")
        versions = await _versions(migrated_database_url, waiting)
        assert [v.scan_status for v in versions] == [ScanStatus.CLEAN] * 3
    finally:
        with contextlib.suppress(Exception):
            await owner.close()
