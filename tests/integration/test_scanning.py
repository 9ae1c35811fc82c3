"""storage.scanning: the scan worker against a real clamd (tests/clamd.py) and the real
databases. Versions are made with the ORM directly."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import BLOBS, BUS, SCAN_WORKER
from core.bus import Event, EventBus, MemoryBus
from core.clock import utcnow
from core.permissions import Role
from core.settings import Settings
from db.connection import open_database
from db.models.chat import Notification
from db.models.files import File, FileVersion, ScanStatus
from db.models.identity import SecurityEvent, User
from storage.blobs import BlobStore
from storage.blobs.local import LocalBlobStore
from storage.scan import ClamdScanner, NullScanner, Scanner, TcpAddress, parse_clamd_url
from storage.scanning import MAX_BACKOFF_SECONDS, ScanOutcome, ScanWorker, retry_delay
from tests.blobs import repeated, stream
from tests.clamd import (
    BODY_SIGNATURE,
    DEFAULT_STREAM_MAX_LENGTH,
    EICAR,
    HASH_SIGNATURE,
    ClamdServer,
    run_clamd,
)
from tests.conftest import SettingsFactory

MiB = 1024 * 1024
SMALL_LIMIT = 1 * MiB
EICAR_SIGNATURES = (f"{HASH_SIGNATURE}.UNOFFICIAL", f"{BODY_SIGNATURE}.UNOFFICIAL")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    with run_clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


@pytest.fixture(scope="module")
def small_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """A clamd whose StreamMaxLength (1 MiB) is below the files sent to it."""
    with run_clamd(tmp_path_factory.mktemp("clamd-small"), stream_max_length=SMALL_LIMIT) as server:
        yield server


@pytest.fixture
async def db(migrated_database_url: str) -> AsyncIterator[str]:
    async with open_database(migrated_database_url):
        yield migrated_database_url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[BlobStore]:
    async with LocalBlobStore(tmp_path / "blobs") as opened:
        yield opened


class Recorder:
    """Every event on a bus, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [event.data for event in self.events if event.type == event_type]

    async def wait_for(self, event_type: str, count: int = 1, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.of(event_type)) >= count)


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    memory = MemoryBus()
    await memory.start()
    yield memory
    await memory.close()


@pytest.fixture
async def recorder(bus: EventBus) -> Recorder:
    recording = Recorder()
    await bus.subscribe("*", recording)
    return recording


async def drained(bus: EventBus) -> None:
    for subscription in list(bus._subscriptions):
        await subscription.drain()


@dataclass(frozen=True)
class Made:
    file: File
    version: FileVersion


async def make_version(
    store: BlobStore,
    owner: User,
    data: bytes,
    *,
    name: str = "part.stl",
    status: ScanStatus = ScanStatus.PENDING,
) -> Made:
    blob = await store.put_stream(stream(data))
    file = await File.create(owner=owner, name=name, current_version=1, size=blob.size)
    version = await FileVersion.create(
        file=file,
        number=1,
        blob_key=blob.key,
        size=blob.size,
        original_name=name,
        scan_status=status,
        created_by=owner,
    )
    return Made(file=file, version=version)


async def make_user(role: Role = Role.CUSTOMER, *, active: bool = True) -> User:
    return await User.create(
        email=f"{role.value}-{utcnow().timestamp()}-{id(object())}@example.com",
        role=role,
        is_active=active,
    )


def worker(store: BlobStore, scanner: Scanner, bus: EventBus, **options: Any) -> ScanWorker:
    return ScanWorker(store=store, scanner=scanner, bus=bus, retry_seconds=30, **options)


@pytest.fixture(scope="module")
def dead_port() -> Iterator[int]:
    """clamd stopped: a port held (bound, never listening) so that nothing else can take it
    and every connection is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def dead_scanner(port: int) -> ClamdScanner:
    return ClamdScanner(TcpAddress("127.0.0.1", port), connect_timeout=2)


# -- verdicts ------------------------------------------------------------------------------


async def test_clean_file_is_marked_clean_and_announced(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"solid part\nendsolid part\n")
    scan = worker(store, ClamdScanner(parse_clamd_url(clamd.url)), bus)

    outcomes = await scan.scan_due()
    await drained(bus)

    assert outcomes == [
        ScanOutcome(
            version_id=made.version.id, file_id=made.file.id, status=ScanStatus.CLEAN, attempts=1
        )
    ]
    row = await FileVersion.get(id=made.version.id)
    assert (row.scan_status, row.scan_signature, row.scan_attempts) == (ScanStatus.CLEAN, None, 1)
    assert row.scanned_at is not None
    assert row.next_scan_at is None
    assert recorder.of("file.scanned") == [
        {
            "file_id": str(made.file.id),
            "version_id": str(made.version.id),
            "version": 1,
            "owner_id": str(owner.id),
            "status": "clean",
            "signature": None,
        }
    ]
    assert recorder.of("security.event") == []
    assert await scan.scan_due() == []  # nothing is scanned twice


async def test_eicar_is_quarantined_reported_and_staff_are_told(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    editor = await make_user(Role.EDITOR)
    admin = await make_user(Role.ADMIN)
    await make_user(Role.ADMIN, active=False)
    await make_user()  # another customer
    made = await make_version(store, owner, EICAR, name="invoice.pdf")
    scan = worker(store, ClamdScanner(parse_clamd_url(clamd.url)), bus)

    [outcome] = await scan.scan_due()
    await drained(bus)

    assert outcome.status is ScanStatus.INFECTED
    assert outcome.signature in EICAR_SIGNATURES
    row = await FileVersion.get(id=made.version.id)
    assert row.scan_status is ScanStatus.INFECTED
    assert row.scan_status not in (ScanStatus.CLEAN, ScanStatus.UNSCANNED)  # not downloadable
    assert row.scan_signature == outcome.signature
    assert row.scanned_at is not None
    assert recorder.of("file.scanned") == [
        {
            "file_id": str(made.file.id),
            "version_id": str(made.version.id),
            "version": 1,
            "owner_id": str(owner.id),
            "status": "infected",
            "signature": outcome.signature,
        }
    ]
    [security] = recorder.of("security.event")
    logged = await SecurityEvent.get(kind="file_infected")
    assert security == {
        "id": str(logged.id),
        "kind": "file_infected",
        "file_id": str(made.file.id),
        "version_id": str(made.version.id),
        "version": 1,
        "owner_id": str(owner.id),
        "signature": outcome.signature,
    }
    assert logged.user_id == owner.id  # type: ignore[attr-defined]
    rows = await Notification.all().order_by("id")
    assert sorted(r.user_id for r in rows) == sorted([editor.id, admin.id])  # type: ignore[attr-defined]
    assert {r.type for r in rows} == {"file.infected"}
    assert rows[0].title == "Virus found in invoice.pdf"
    assert rows[0].data == {
        "file_id": str(made.file.id),
        "version_id": str(made.version.id),
        "version": 1,
        "owner_id": str(owner.id),
        "signature": outcome.signature,
    }
    announced = recorder.of("notification.created")
    assert sorted(n["user_id"] for n in announced) == sorted([str(editor.id), str(admin.id)])
    assert {n["id"] for n in announced} == {str(r.id) for r in rows}
    # The order of news: the verdict, then the security log, then the staff inbox.
    types = [e.type for e in recorder.events]
    assert types == [
        "file.scanned",
        "security.event",
        "notification.created",
        "notification.created",
    ]


async def test_a_stream_over_clamds_limit_fails_and_is_never_clean(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, small_clamd: ClamdServer
) -> None:
    owner = await make_user()
    blob = await store.put_stream(repeated(b"clean bytes " * 1024, 200))  # 2.4 MiB > 1 MiB
    file = await File.create(owner=owner, name="big.stl", current_version=1, size=blob.size)
    version = await FileVersion.create(file=file, number=1, blob_key=blob.key, size=blob.size)
    scan = worker(store, ClamdScanner(parse_clamd_url(small_clamd.url)), bus)

    [outcome] = await scan.scan_due()
    await drained(bus)

    assert outcome.status is ScanStatus.FAILED
    assert outcome.reason == "clamd: INSTREAM size limit exceeded."
    row = await FileVersion.get(id=version.id)
    assert (row.scan_status, row.scan_signature) == (ScanStatus.FAILED, None)
    assert [e["status"] for e in recorder.of("file.scanned")] == ["failed"]
    [security] = recorder.of("security.event")
    assert security["kind"] == "scan_failed"
    assert security["reason"] == "clamd: INSTREAM size limit exceeded."
    assert security["version_id"] == str(version.id)
    assert await Notification.all().count() == 0
    assert await scan.scan_due() == []


async def test_a_missing_blob_fails_the_scan(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    file = await File.create(owner=owner, name="gone.stl")
    version = await FileVersion.create(file=file, number=1, blob_key="0" * 64, size=10)
    scan = worker(store, ClamdScanner(parse_clamd_url(clamd.url)), bus)

    [outcome] = await scan.scan_due()

    assert (outcome.status, outcome.reason) == (ScanStatus.FAILED, "blob_missing")
    assert (await FileVersion.get(id=version.id)).scan_status is ScanStatus.FAILED


# -- clamd away ----------------------------------------------------------------------------


async def test_clamd_away_keeps_the_version_pending_with_backoff_then_clean(
    db: str,
    store: BlobStore,
    bus: EventBus,
    recorder: Recorder,
    clamd: ClamdServer,
    dead_port: int,
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"v 0 0 0\n")
    scan = worker(store, dead_scanner(dead_port), bus)

    # clamd stopped: the version stays pending, the attempt is counted, a retry is planned
    before = utcnow()
    [first] = await scan.scan_due()
    row = await FileVersion.get(id=made.version.id)
    assert (first.status, row.scan_status, row.scan_attempts) == (
        ScanStatus.PENDING,
        ScanStatus.PENDING,
        1,
    )
    assert row.next_scan_at is not None
    assert before + timedelta(seconds=15) <= row.next_scan_at <= utcnow() + timedelta(seconds=30)
    assert row.scanned_at is None
    assert await scan.scan_due() == []  # not due yet

    # still away at the retry: the wait doubles
    retry_at = row.next_scan_at
    [_second] = await scan.scan_due(now=retry_at)
    row = await FileVersion.get(id=made.version.id)
    assert (row.scan_status, row.scan_attempts) == (ScanStatus.PENDING, 2)
    assert row.next_scan_at is not None
    assert row.next_scan_at - utcnow() >= timedelta(seconds=29)

    # clamd back: the next due scan is clean
    scan.scanner = ClamdScanner(parse_clamd_url(clamd.url))
    [third] = await scan.scan_due(now=row.next_scan_at)
    await drained(bus)
    row = await FileVersion.get(id=made.version.id)
    assert (third.status, row.scan_status, row.scan_attempts) == (
        ScanStatus.CLEAN,
        ScanStatus.CLEAN,
        3,
    )
    assert row.next_scan_at is None
    assert [e["status"] for e in recorder.of("file.scanned")] == ["clean"]  # one verdict only


def test_the_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    for attempts, ceiling in [(1, 30), (2, 60), (3, 120), (4, 240), (8, 3600), (40, 3600)]:
        delays = [retry_delay(attempts, base_seconds=30) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempts
        assert len(set(delays)) > 1  # jitter
    assert retry_delay(1000, base_seconds=30) <= MAX_BACKOFF_SECONDS


async def test_a_scan_claimed_by_a_worker_that_died_is_taken_over_after_its_lease(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"hello\n")
    lease = utcnow() + timedelta(minutes=15)
    await FileVersion.filter(id=made.version.id).update(next_scan_at=lease, scan_attempts=1)
    scan = worker(store, ClamdScanner(parse_clamd_url(clamd.url)), bus)

    assert await scan.scan_due() == []  # the lease holds
    [outcome] = await scan.scan_due(now=lease + timedelta(seconds=1))

    assert (outcome.status, outcome.attempts) == (ScanStatus.CLEAN, 2)


async def test_a_verdict_after_the_claim_was_lost_is_dropped(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, EICAR)
    slow = worker(store, ClamdScanner(parse_clamd_url(clamd.url)), bus)
    version = await FileVersion.get(id=made.version.id)
    version.scan_attempts = 1  # what the slow worker claimed; another has claimed since
    await FileVersion.filter(id=version.id).update(scan_attempts=2)

    await slow._scan(version)
    await drained(bus)

    row = await FileVersion.get(id=version.id)
    assert (row.scan_status, row.scan_attempts) == (ScanStatus.PENDING, 2)
    assert recorder.events == []


# -- the background loop ------------------------------------------------------------------


async def test_the_running_worker_finds_versions_whose_event_was_missed(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"nobody announced me\n")
    scan = worker(store, ClamdScanner(parse_clamd_url(clamd.url)), bus, poll_seconds=0.2)

    await scan.start()  # no file.version_created is ever emitted
    try:
        await recorder.wait_for("file.scanned")
    finally:
        await scan.stop()

    assert recorder.of("file.scanned")[0]["version_id"] == str(made.version.id)
    assert recorder.of("file.scanned")[0]["status"] == "clean"


async def test_the_running_worker_retries_on_its_own_once_clamd_is_back(
    db: str,
    store: BlobStore,
    bus: EventBus,
    recorder: Recorder,
    clamd: ClamdServer,
    dead_port: int,
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"retry me\n")
    scan = ScanWorker(
        store=store, scanner=dead_scanner(dead_port), bus=bus, retry_seconds=0.3, poll_seconds=30
    )

    await scan.start()
    try:
        async with asyncio.timeout(30):
            while (await FileVersion.get(id=made.version.id)).scan_attempts < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the database is what tells: poll it
        scan.scanner = ClamdScanner(parse_clamd_url(clamd.url))  # clamd is back
        await recorder.wait_for("file.scanned")
    finally:
        await scan.stop()

    row = await FileVersion.get(id=made.version.id)
    assert row.scan_status is ScanStatus.CLEAN
    assert row.scan_attempts >= 2  # the swap may land while attempt 2 is claimed


async def test_a_scan_cut_short_by_shutdown_is_released_for_the_next_worker(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"slow\n")
    connected = asyncio.Event()

    async def silent_clamd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # read the stream, never answer
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(silent_clamd, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    scan = worker(store, ClamdScanner(TcpAddress("127.0.0.1", port)), bus)
    try:
        await scan.start()
        await asyncio.wait_for(connected.wait(), 30)
        await scan.stop()  # mid-scan
    finally:
        server.close()
        await server.wait_closed()

    row = await FileVersion.get(id=made.version.id)
    assert (row.scan_status, row.scan_attempts, row.next_scan_at) == (ScanStatus.PENDING, 1, None)
    assert recorder.of("file.scanned") == []


# -- several workers -----------------------------------------------------------------------


async def test_two_workers_racing_scan_each_version_once(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder, clamd: ClamdServer
) -> None:
    owner = await make_user()
    made = [await make_version(store, owner, f"file {i}\n".encode()) for i in range(12)]
    scanner = ClamdScanner(parse_clamd_url(clamd.url))
    first = worker(store, scanner, bus, batch_size=12, concurrency=4)
    second = worker(store, scanner, bus, batch_size=12, concurrency=4)

    results = await asyncio.gather(first.scan_due(), second.scan_due())
    await drained(bus)

    scanned = [outcome.version_id for outcomes in results for outcome in outcomes]
    assert sorted(scanned) == sorted(m.version.id for m in made)  # each once, none left out
    assert len(recorder.of("file.scanned")) == 12
    rows = await FileVersion.all()
    assert {(r.scan_status, r.scan_attempts) for r in rows} == {(ScanStatus.CLEAN, 1)}


# -- no scanner ----------------------------------------------------------------------------


async def test_without_a_scanner_unscanned_versions_are_announced_once(
    db: str, store: BlobStore, bus: EventBus, recorder: Recorder
) -> None:
    owner = await make_user()
    made = await make_version(store, owner, b"hello\n", status=ScanStatus.UNSCANNED)
    pending = await make_version(store, owner, b"other\n")
    hubs = [worker(store, NullScanner(), bus), worker(store, NullScanner(), bus)]  # two hubs
    for hub in hubs:
        await hub.start()
    try:
        await bus.emit(
            "file.version_created",
            {"file_id": str(made.file.id), "version_id": str(made.version.id), "version": 1},
        )
        await recorder.wait_for("file.scanned")
        assert [await hub.scan_due() for hub in hubs] == [[], []]  # nothing left, nothing scanned
    finally:
        for hub in hubs:
            await hub.stop()
    await drained(bus)

    assert recorder.of("file.scanned") == [
        {
            "file_id": str(made.file.id),
            "version_id": str(made.version.id),
            "version": 1,
            "owner_id": str(owner.id),
            "status": "unscanned",
            "signature": None,
        }
    ]
    assert (await FileVersion.get(id=made.version.id)).scan_status is ScanStatus.UNSCANNED
    assert (await FileVersion.get(id=pending.version.id)).scan_status is ScanStatus.PENDING


# -- in the app ----------------------------------------------------------------------------


async def test_the_app_scans_a_new_version_when_it_hears_of_it(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    clamd: ClamdServer,
) -> None:
    settings = make_settings(database_url=migrated_database_url, clamd_url=clamd.url)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    app = client.server.app
    recorder = Recorder()
    await app[BUS].subscribe("file.scanned", recorder)
    assert app[SCAN_WORKER].scanning
    async with open_database(settings.database_url):
        owner = await make_user()
        made = await make_version(app[BLOBS], owner, EICAR, name="drawing.dxf")

        await app[BUS].emit(
            "file.version_created",
            {"file_id": str(made.file.id), "version_id": str(made.version.id), "version": 1},
        )
        await recorder.wait_for("file.scanned")

        [scanned] = recorder.of("file.scanned")
        assert scanned["status"] == "infected"
        row = await FileVersion.get(id=made.version.id)
        assert row.scan_status is ScanStatus.INFECTED


async def test_the_app_without_clamd_announces_unscanned_versions(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    app = client.server.app
    recorder = Recorder()
    await app[BUS].subscribe("file.scanned", recorder)
    assert not app[SCAN_WORKER].scanning
    async with open_database(settings.database_url):
        owner = await make_user()
        made = await make_version(app[BLOBS], owner, b"hi\n", status=ScanStatus.UNSCANNED)

        await app[BUS].emit("file.version_created", {"version_id": str(made.version.id)})
        await recorder.wait_for("file.scanned")

    assert recorder.of("file.scanned")[0]["status"] == "unscanned"


# -- clamd's limits ------------------------------------------------------------------------


def _limits(text: str) -> dict[str, int]:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    found = {}
    for name in ("StreamMaxLength", "MaxFileSize", "MaxScanSize"):
        match = re.search(rf"^{name} (\d+)([KMG]?)$", text, re.MULTILINE)
        assert match is not None, name
        found[name] = int(match.group(1)) * units[match.group(2)]
    return found


def test_clamds_limits_are_above_the_largest_upload() -> None:
    largest = Settings.model_fields["upload_max_bytes"].default
    production = (ROOT / "docker" / "clamd.conf").read_text(encoding="utf-8")

    assert all(value > largest for value in _limits(production).values())
    assert re.search(r"^AlertExceedsMax yes$", production, re.MULTILINE)
    assert largest < DEFAULT_STREAM_MAX_LENGTH
    assert _limits(production)["StreamMaxLength"] == DEFAULT_STREAM_MAX_LENGTH
