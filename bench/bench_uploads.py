"""Uploads: a 500 MB file (BENCH_UPLOAD_MB) through tus over loopback, into our hub and into
the Node tus server (@tus/server + @tus/file-store, bench/peers/tus_server.mjs), sent by the
same client (aiohttp, one streamed PATCH with its Content-Length, as tus-js-client does by
default); and raw disk write speed (`dd if=/dev/zero bs=1M conv=fsync`) on the same file
system. MB/s and the servers' peak RSS, medians of BENCH_RUNS runs (default 3).

The client's own ceiling is measured too: the same client against a server that reads the
bytes and drops them (`sink`, a bare uvloop protocol). Each upload's content is new (its first
line is unique), so our content-addressed store writes (and fsyncs) every run in full instead
of finding the blob already there.

What the comparison with dd is: dd copies zeros from memory to the page cache and fsyncs; an
upload also crosses loopback TCP (both ends on this machine's cores), is parsed as HTTP and
hashed (sha256), and the client runs on the same cores. The Node file store does not fsync."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from bench.harness import (
    Proc,
    ensure_peers,
    free_port,
    hub_accounts,
    median,
    print_table,
    running_hub,
    running_node,
    wait_for_port,
)
from bench.tus_memory import BLOCK, MB, _body

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SIZE_MB = int(os.environ.get("BENCH_UPLOAD_MB", "500"))


async def unique_body(size: int) -> AsyncIterator[bytes]:
    """`size` bytes of text in 1 MiB pieces; the first line differs from one call to another."""
    first = f"upload {secrets.token_hex(16)}\n".encode()[:size]
    yield first
    async for piece in _body(len(first), size):
        yield piece


async def tus_upload(create_url: str, headers: dict[str, str], size: int) -> float:
    """Create an upload and send it in one streamed PATCH with its Content-Length; the seconds
    from the first byte to the server's 204 (the same client for every server). aiohttp sends
    a body without Content-Length chunked, and then caps at about 420 MiB/s here (the sink)."""
    metadata = (
        f"filename {base64.b64encode(b'bench.txt').decode()},"
        f"filetype {base64.b64encode(b'text/plain').decode()}"
    )
    base = {**headers, "Tus-Resumable": "1.0.0"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(
            create_url,
            headers={**base, "Upload-Length": str(size), "Upload-Metadata": metadata},
        ) as created:
            if created.status != 201:
                raise SystemExit(f"creation refused: {created.status} {await created.text()}")
            location = urljoin(create_url, created.headers["Location"])
        started = time.perf_counter()
        async with session.patch(
            location,
            data=unique_body(size),
            headers={
                **base,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(size),
            },
        ) as response:
            if response.status != 204 or int(response.headers["Upload-Offset"]) != size:
                raise SystemExit(f"PATCH refused: {response.status} {await response.text()}")
        return time.perf_counter() - started


def _ours(workdir: Path, size: int) -> tuple[list[float], float]:
    env = {"UPLOAD_MAX_BYTES": str(max(size, 500 * MB))}
    with running_hub(workdir, env=env) as (proc, port):
        token = hub_accounts(workdir, port).customer_token
        url = f"http://127.0.0.1:{port}/api/v1/uploads/"
        auth = {"Authorization": f"Bearer {token}"}
        seconds = [asyncio.run(tus_upload(url, auth, size)) for _ in range(RUNS)]
        return seconds, proc.peak_rss_kib() / 1024


def _node(workdir: Path, size: int) -> tuple[list[float], float]:
    store = workdir / "tus-files"
    store.mkdir()
    with running_node("tus_server.mjs", str(store)) as (proc, port):
        url = f"http://127.0.0.1:{port}/files"
        seconds = []
        for _ in range(RUNS):
            seconds.append(asyncio.run(tus_upload(url, {}, size)))
            for path in store.iterdir():  # keep the disk as empty as for our side
                path.unlink()
        return seconds, proc.peak_rss_kib() / 1024


class _Sink(asyncio.Protocol):
    """The client's ceiling: reads each request (Content-Length bodies), drops the bytes and
    answers as a tus server would (201 to the POST, 204 to the PATCH)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.head = b""
        self.left: int | None = None  # body bytes still to come; None while reading the head
        self.method = b""
        self.received = 0

    def data_received(self, data: bytes) -> None:
        while data:
            if self.left is None:
                self.head += data
                head, found, data = self.head.partition(b"\r\n\r\n")
                if not found:
                    return
                lines = head.split(b"\r\n")
                self.method = lines[0].split(b" ", 1)[0]
                self.left = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        self.left = int(value)
            taken = min(self.left, len(data))
            self.left -= taken
            self.received += taken
            data = data[taken:]
            if self.left == 0:
                self._answer()

    def _answer(self) -> None:
        if self.method == b"POST":
            status = b"201 Created\r\nLocation: /files/sink\r\nUpload-Offset: 0"
        else:
            status = b"204 No Content\r\nUpload-Offset: %d" % self.received
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nTus-Resumable: 1.0.0\r\n\r\n")
        self.head, self.left, self.received = b"", None, 0


async def _serve_sink(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sink, "127.0.0.1", port)
    await server.serve_forever()


@contextmanager
def _running_sink() -> Iterator[tuple[Proc, int]]:
    port = free_port()
    popen = subprocess.Popen([sys.executable, "-m", "bench.bench_uploads", "--sink", str(port)])
    proc = Proc(popen)
    try:
        wait_for_port(port)
        yield proc, port
    finally:
        proc.stop()


def _sink(size: int) -> list[float]:
    with _running_sink() as (_, port):
        url = f"http://127.0.0.1:{port}/files"
        return [asyncio.run(tus_upload(url, {}, size)) for _ in range(RUNS)]


def _dd(workdir: Path, size_mb: int) -> list[float]:
    target = workdir / "dd.bin"
    seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size_mb}", "conv=fsync"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds.append(time.perf_counter() - started)
        target.unlink()
    return seconds


def _hash_and_write(workdir: Path, size_mb: int) -> list[float]:
    """What a content-addressed store must do per byte, without the network: 1 MiB blocks
    written and fed to sha256 in one thread, then fsync."""
    target = workdir / "floor.bin"
    seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        digest = hashlib.sha256()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for _ in range(size_mb):
                os.write(fd, BLOCK)
                digest.update(BLOCK)
            os.fsync(fd)
        finally:
            os.close(fd)
        seconds.append(time.perf_counter() - started)
        target.unlink()
    return seconds


def main() -> None:
    ensure_peers()
    size = SIZE_MB * MB
    with tempfile.TemporaryDirectory(prefix="bench-uploads-", dir=os.environ.get("BENCH_DIR")) as t:
        tmp = Path(t)
        (tmp / "hub").mkdir()
        (tmp / "node").mkdir()
        load_before = _load_average()
        ours, ours_peak = _ours(tmp / "hub", size)
        node, node_peak = _node(tmp / "node", size)
        disk = _dd(tmp, SIZE_MB)
        floor = _hash_and_write(tmp, SIZE_MB)
        ceiling = _sink(size)
        load_after = _load_average()
    ours_rate = size / MB / median(ours)
    print(f"load average (1 min) before {load_before}, after {load_after}")
    print(
        "runs, MiB/s: ours "
        + ", ".join(f"{size / MB / s:.0f}" for s in ours)
        + "; node "
        + ", ".join(f"{size / MB / s:.0f}" for s in node)
        + "; dd "
        + ", ".join(f"{SIZE_MB / s:.0f}" for s in disk)
        + "; sha256 + write + fsync "
        + ", ".join(f"{SIZE_MB / s:.0f}" for s in floor)
        + "; client into a sink "
        + ", ".join(f"{size / MB / s:.0f}" for s in ceiling)
    )
    print_table(
        f"Uploads: {SIZE_MB} MiB through tus, one PATCH over loopback "
        f"(median of {RUNS}; reference: Node @tus/server + @tus/file-store, same client)",
        [
            ("MiB/s", ours_rate, size / MB / median(node), True),
            ("seconds", median(ours), median(node), False),
            ("server peak RSS MiB", ours_peak, node_peak, False),
        ],
    )
    print_table(
        f"Uploads: the same tus upload against raw disk writes (median of {RUNS}; "
        f"reference: dd if=/dev/zero bs=1M count={SIZE_MB} conv=fsync)",
        [("MiB/s", ours_rate, size / MB / median(disk), True)],
    )
    print_table(
        f"Uploads: the same tus upload against the local work alone (median of {RUNS}; "
        "reference: 1 MiB blocks written and hashed (sha256) in one thread, then fsync)",
        [("MiB/s", ours_rate, SIZE_MB / median(floor), True)],
    )
    print_table(
        f"Uploads: the same tus upload against the client's ceiling (median of {RUNS}; "
        "reference: the same client into a server that drops the bytes)",
        [("MiB/s", ours_rate, size / MB / median(ceiling), True)],
    )


def _load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sink"]:
        asyncio.run(_serve_sink(int(sys.argv[2])))
    else:
        main()
