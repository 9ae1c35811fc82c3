"""storage.scan against a real clamd (tests/clamd.py) with the EICAR test signatures."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from storage.scan import (
    ClamdScanner,
    NullScanner,
    ScanFailed,
    ScannerUnavailable,
    ScanResult,
    TcpAddress,
    UnixAddress,
    make_scanner,
    parse_clamd_url,
    parse_reply,
)
from tests.clamd import BODY_SIGNATURE, EICAR, HASH_SIGNATURE, ClamdServer, run_clamd

MiB = 1024 * 1024
SMALL_LIMIT = 1 * MiB


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """Both EICAR signatures, limits far above the streams sent here."""
    with run_clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


@pytest.fixture(scope="module")
def small_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """The .hdb (exact EICAR) signature only, and a 1 MiB StreamMaxLength."""
    workdir = tmp_path_factory.mktemp("clamd-small")
    with run_clamd(workdir, stream_max_length=SMALL_LIMIT, body_signature=False) as server:
        yield server


async def stream(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def filler(total: int, chunk: int) -> Iterator[bytes]:
    """`total` clean bytes in fresh `chunk`-sized objects (a new allocation each time)."""
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield bytes([sent // chunk % 200 + 32]) * size
        sent += size


@asynccontextmanager
async def fake_clamd(
    behave: Callable[[asyncio.StreamReader], Awaitable[None]],
) -> AsyncIterator[int]:
    """A loopback server that runs `behave` on each connection, then hangs up; yields its
    port and waits for every connection to be closed before it stops."""
    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await behave(reader)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- a real clamd -------------------------------------------------------------------------


async def test_clean_bytes_are_clean(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(clamd.url))

    result = await scanner.scan(stream([b"hello, ", b"world\n"]))

    assert result == ScanResult(clean=True, signature=None, scanned=True)


async def test_exact_eicar_is_found_by_its_hash(small_clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(small_clamd.url))

    result = await scanner.scan(stream([EICAR]))

    assert result == ScanResult(clean=False, signature=f"{HASH_SIGNATURE}.UNOFFICIAL")


async def test_exact_eicar_is_infected_with_both_signatures_loaded(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(clamd.url))

    result = await scanner.scan(stream([EICAR[:10], EICAR[10:]]))

    assert result.clean is False
    assert result.signature in (f"{HASH_SIGNATURE}.UNOFFICIAL", f"{BODY_SIGNATURE}.UNOFFICIAL")


async def test_eicar_inside_a_large_stream_split_across_chunks(clamd: ClamdServer) -> None:
    # Given 5 MiB of clean bytes with EICAR in the middle, cut across a chunk boundary
    head = list(filler(2 * MiB + 17, 100_000))
    tail = list(filler(3 * MiB, 100_000))
    pieces = [*head, EICAR[:30], EICAR[30:], *tail]
    scanner = ClamdScanner(parse_clamd_url(clamd.url), chunk_size=64 * 1024)

    result = await scanner.scan(stream(pieces))

    assert len(pieces) > 50
    assert result == ScanResult(clean=False, signature=f"{BODY_SIGNATURE}.UNOFFICIAL")


async def test_source_chunks_larger_than_chunk_size_are_sliced(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(clamd.url), chunk_size=4096)

    result = await scanner.scan(stream([b"x" * (3 * MiB) + EICAR]))

    assert result == ScanResult(clean=False, signature=f"{BODY_SIGNATURE}.UNOFFICIAL")


async def test_a_large_clean_stream_is_scanned_one_chunk_at_a_time(clamd: ClamdServer) -> None:
    # Given 20 MiB from a generator that makes every 64 KiB chunk afresh
    chunk = 64 * 1024
    scanner = ClamdScanner(parse_clamd_url(clamd.url), chunk_size=chunk)
    tracemalloc.start()
    try:
        # When it is scanned
        result = await scanner.scan(stream(filler(20 * MiB, chunk)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then it is clean, and the client never held more than a few chunks (not 20 MiB)
    assert result == ScanResult(clean=True, signature=None)
    assert peak < 8 * chunk


async def test_scanning_over_the_unix_socket(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(clamd.unix_url))

    clean = await scanner.scan(stream([b"plain text"]))
    infected = await scanner.scan(stream([b"prefix ", EICAR, b" suffix"]))

    assert clean == ScanResult(clean=True, signature=None)
    assert infected == ScanResult(clean=False, signature=f"{BODY_SIGNATURE}.UNOFFICIAL")


async def test_a_stream_at_the_size_limit_is_scanned(small_clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(small_clamd.url))

    result = await scanner.scan(stream(filler(SMALL_LIMIT, 64 * 1024)))

    assert result == ScanResult(clean=True, signature=None)


async def test_a_stream_over_the_size_limit_fails(small_clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(small_clamd.url))

    with pytest.raises(ScanFailed) as caught:
        await scanner.scan(stream(filler(20 * MiB, 64 * 1024)))

    assert caught.value.code == "scan_failed"
    assert caught.value.message == "clamd: INSTREAM size limit exceeded."
    assert caught.value.details == {"reply": "INSTREAM size limit exceeded. ERROR"}


async def test_ping_and_version(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(clamd.url))

    assert await scanner.ping() is True
    version = await scanner.version()
    assert version is not None
    assert version.startswith("ClamAV ")


async def test_make_scanner_uses_clamd_when_configured(clamd: ClamdServer) -> None:
    settings = Settings(_env_file=None, clamd_url=clamd.url)  # type: ignore[call-arg]

    scanner = make_scanner(settings)

    assert isinstance(scanner, ClamdScanner)
    assert scanner.address == TcpAddress(host="127.0.0.1", port=clamd.port)
    assert await scanner.scan(stream([b"x" + EICAR])) == ScanResult(
        clean=False, signature=f"{BODY_SIGNATURE}.UNOFFICIAL"
    )


async def test_an_error_of_the_source_propagates_unchanged(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(parse_clamd_url(clamd.url), reply_timeout=60)

    async def failing_source() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise OSError("disk read failed")

    with pytest.raises(OSError, match="disk read failed") as caught:
        await scanner.scan(failing_source())

    assert not isinstance(caught.value, ScannerUnavailable)
    assert await scanner.ping() is True


# -- clamd unavailable ----------------------------------------------------------------------


async def test_nothing_listening_is_unavailable() -> None:
    scanner = ClamdScanner(TcpAddress(host="127.0.0.1", port=unused_port()))
    source_read = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal source_read
        source_read = True
        yield b"never sent"

    with pytest.raises(ScannerUnavailable) as caught:
        await scanner.scan(source())

    assert caught.value.code == "scanner_unavailable"
    assert caught.value.status == 503
    assert source_read is False
    assert await scanner.ping() is False
    with pytest.raises(ScannerUnavailable):
        await scanner.version()


async def test_missing_unix_socket_is_unavailable(tmp_path: Path) -> None:
    scanner = ClamdScanner(UnixAddress(path=str(tmp_path / "absent.sock")))

    with pytest.raises(ScannerUnavailable):
        await scanner.scan(stream([b"data"]))


async def test_a_server_that_never_answers_times_out() -> None:
    # Given a server that reads everything and never replies
    async def swallow(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async with fake_clamd(swallow) as port:
        scanner = ClamdScanner(TcpAddress(host="127.0.0.1", port=port), reply_timeout=0.2)
        with pytest.raises(ScannerUnavailable) as caught:
            await scanner.scan(stream([b"data"]))

    assert "gave no verdict in 0.2 s" in caught.value.message


async def test_a_server_that_hangs_up_without_a_reply_is_unavailable() -> None:
    async def hang_up(reader: asyncio.StreamReader) -> None:
        await reader.readuntil(b"\0")

    async with fake_clamd(hang_up) as port:
        scanner = ClamdScanner(TcpAddress(host="127.0.0.1", port=port))
        with pytest.raises(ScannerUnavailable, match=r"closed the connection|broke the connection"):
            await scanner.scan(stream([b"data"] * 100))


# -- the embedded mode and URLs -------------------------------------------------------------


async def test_null_scanner_passes_everything_unscanned() -> None:
    scanner = NullScanner()

    result = await scanner.scan(stream([EICAR]))

    assert result == ScanResult(clean=True, signature=None, scanned=False)
    assert await scanner.ping() is True
    assert await scanner.version() is None


def test_make_scanner_without_clamd_url_is_the_null_scanner() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert isinstance(make_scanner(settings), NullScanner)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("tcp://127.0.0.1:3310", TcpAddress(host="127.0.0.1", port=3310)),
        ("tcp://clamav.internal:3310/", TcpAddress(host="clamav.internal", port=3310)),
        ("tcp://[::1]:3310", TcpAddress(host="::1", port=3310)),
        ("unix:///run/clamav/clamd.ctl", UnixAddress(path="/run/clamav/clamd.ctl")),
    ],
)
def test_parse_clamd_url(url: str, address: TcpAddress | UnixAddress) -> None:
    assert parse_clamd_url(url) == address


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:3310", "the scheme must be tcp or unix"),
        ("127.0.0.1:3310", "the scheme must be tcp or unix"),
        ("tcp://127.0.0.1", "no port"),
        ("tcp://:3310", "no host"),
        ("tcp://127.0.0.1:99999", "Port out of range"),
        ("tcp://127.0.0.1:3310/path", "unexpected path or query"),
        ("unix://", "no socket path"),
        ("unix://run/clamav/clamd.ctl", "expected unix:///absolute/path"),
    ],
)
def test_parse_clamd_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match="malformed clamd URL") as caught:
        parse_clamd_url(url)

    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        ("stream: OK", ScanResult(clean=True, signature=None)),
        (
            "stream: Win.Test.EICAR_HDB-1 FOUND",
            ScanResult(clean=False, signature="Win.Test.EICAR_HDB-1"),
        ),
    ],
)
def test_parse_reply(reply: str, result: ScanResult) -> None:
    assert parse_reply(reply) == result


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("INSTREAM size limit exceeded. ERROR", "clamd: INSTREAM size limit exceeded."),
        ("stream: Can't allocate memory ERROR", "clamd: stream: Can't allocate memory"),
        ("UNKNOWN COMMAND", "Unexpected reply from clamd: 'UNKNOWN COMMAND'"),
    ],
)
def test_parse_reply_errors(reply: str, message: str) -> None:
    with pytest.raises(ScanFailed) as caught:
        parse_reply(reply)

    assert caught.value.message == message
    assert caught.value.details == {"reply": reply}


@pytest.mark.parametrize("chunk_size", [0, 2**32])
def test_chunk_size_must_fit_the_length_prefix(chunk_size: int) -> None:
    with pytest.raises(ValueError, match="chunk_size must be between 1 and"):
        ClamdScanner(TcpAddress(host="127.0.0.1", port=3310), chunk_size=chunk_size)
