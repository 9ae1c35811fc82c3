"""Inspection and scanning of blobs kept in S3 (moto_server on loopback): the inspector works
on a temporary copy made a chunk at a time, the scan worker streams the object to clamd."""

from __future__ import annotations

import io
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiobotocore.session import get_session

from core.bus import Event, MemoryBus
from core.permissions import Role
from db.connection import open_database
from db.models.files import File, FileVersion, ScanStatus
from db.models.identity import User
from storage.archives import UnsafeArchive
from storage.blobs.s3 import S3BlobStore
from storage.inspect import inspect_blob
from storage.scan import ClamdScanner, parse_clamd_url
from storage.scanning import ScanWorker
from tests.blobs import repeated, stream
from tests.cad_samples import cad_sample
from tests.clamd import EICAR, ClamdServer, run_clamd
from tests.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    MotoServer,
    client_options,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    with run_clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


@pytest.fixture
async def store(moto: MotoServer, tmp_path: Path) -> AsyncIterator[S3BlobStore]:
    bucket = f"scan-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client("s3", **client_options(moto)) as client:
        await client.create_bucket(Bucket=bucket)
    spool = tmp_path / "spool"
    spool.mkdir()
    async with S3BlobStore(
        bucket,
        "blobs",
        endpoint_url=moto.endpoint_url,
        region_name=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        spool_dir=spool,
    ) as opened:
        yield opened


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the inspector's temporary copies go, to check that none is left."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(path))
    return path


def leftovers(path: Path) -> list[Path]:
    return sorted(path.iterdir())


async def test_an_s3_blob_is_inspected_from_a_temporary_copy(
    store: S3BlobStore, temp_dir: Path
) -> None:
    data = cad_sample("featuretype.3MF").read_bytes()
    blob = await store.put_stream(stream(data))

    info = await inspect_blob(
        store=store, key=blob.key, size=blob.size, filename="featuretype.3MF", claimed_type=None
    )

    assert (info.kind, info.mime_type) == ("3mf", "model/3mf")
    assert info.facts["entries"] == 3
    assert leftovers(temp_dir) == []


async def test_a_refused_s3_blob_leaves_no_copy(store: S3BlobStore, temp_dir: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("/etc/passwd", b"root::0:0")
    blob = await store.put_stream(stream(buffer.getvalue()))

    with pytest.raises(UnsafeArchive) as caught:
        await inspect_blob(
            store=store, key=blob.key, size=blob.size, filename="a.zip", claimed_type=None
        )

    assert caught.value.code == "archive_path_traversal"
    assert leftovers(temp_dir) == []


async def test_inspecting_a_large_s3_blob_keeps_memory_flat(
    store: S3BlobStore, temp_dir: Path
) -> None:
    line = b"G1 X10.000 Y20.000 Z0.200 E1.23456 F1800\n"
    blob = await store.put_stream(repeated(line * 1000, 800))  # 33 MB of G-code
    assert blob.size > 30 * MiB

    tracemalloc.start()
    try:
        info = await inspect_blob(
            store=store, key=blob.key, size=blob.size, filename="print.gcode", claimed_type=None
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info.kind == "text"
    assert peak < 8 * MiB
    assert leftovers(temp_dir) == []


async def test_the_scan_worker_streams_an_s3_blob_to_clamd(
    store: S3BlobStore, clamd: ClamdServer, migrated_database_url: str
) -> None:
    bus = MemoryBus()
    scanned: list[Event] = []

    async def record(event: Event) -> None:
        scanned.append(event)

    await bus.subscribe("file.scanned", record)
    worker = ScanWorker(
        store=store,
        scanner=ClamdScanner(parse_clamd_url(clamd.url)),
        bus=bus,
        retry_seconds=30,
    )
    async with open_database(migrated_database_url):
        owner = await User.create(email="owner@example.com", role=Role.CUSTOMER)
        blob = await store.put_stream(stream(b"clean prefix " * 100_000 + EICAR))
        file = await File.create(owner=owner, name="archive.txt", current_version=1)
        version = await FileVersion.create(file=file, number=1, blob_key=blob.key, size=blob.size)

        [outcome] = await worker.scan_due()
        for subscription in list(bus._subscriptions):
            await subscription.drain()

        assert outcome.status is ScanStatus.INFECTED
        assert (await FileVersion.get(id=version.id)).scan_status is ScanStatus.INFECTED
    assert [event.data["status"] for event in scanned] == ["infected"]
    await bus.close()
