"""Uploads: a 500 MB file (BENCH_UPLOAD_MB) through tus over loopback, into our hub and into
the Node tus server (@tus/server + @tus/file-store, bench/peers/tus_server.mjs), sent by the
same client (aiohttp, one streamed PATCH, as tus-js-client does by default); and raw disk write
speed (`dd if=/dev/zero bs=1M conv=fsync`) on the same file system. MB/s and the servers' peak
RSS, medians of BENCH_RUNS runs (default 3)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from bench.harness import (
    ensure_peers,
    hub_accounts,
    median,
    print_table,
    running_hub,
    running_node,
)
from bench.tus_memory import MB, _body

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SIZE_MB = int(os.environ.get("BENCH_UPLOAD_MB", "500"))


async def tus_upload(create_url: str, headers: dict[str, str], size: int) -> float:
    """Create an upload and send it in one streamed PATCH; the seconds from the first byte to
    the server's 204 (the same client for every server)."""
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
            data=_body(0, size),
            headers={
                **base,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
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


def main() -> None:
    ensure_peers()
    size = SIZE_MB * MB
    with tempfile.TemporaryDirectory(prefix="bench-uploads-", dir=os.environ.get("BENCH_DIR")) as t:
        tmp = Path(t)
        (tmp / "hub").mkdir()
        (tmp / "node").mkdir()
        ours, ours_peak = _ours(tmp / "hub", size)
        node, node_peak = _node(tmp / "node", size)
        disk = _dd(tmp, SIZE_MB)
    ours_rate = size / MB / median(ours)
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


if __name__ == "__main__":
    main()
