"""Memory of a big tus upload: one file (500 MB by default) sent over loopback to a hub, then
the hub's peak RSS (VmHWM in /proc/<pid>/status) and the throughput are printed.

    python -m bench.tus_memory                      # starts `ideinstein serve` (embedded mode)
    python -m bench.tus_memory --size-mb 100
    python -m bench.tus_memory --url http://127.0.0.1:8000 --token ACCESS_JWT --pid 1234

The body is plain text made on the fly (accepted as a `text` file, which nothing renders), sent
as one streamed PATCH (what tus-js-client does by default) or in --chunk-mb pieces. The server
must hold it in bounded memory: its peak RSS should not grow with the size of the file.

VmHWM is the peak since the server started, and the accounts are written straight to the
database: no password is hashed (argon2id takes 64 MiB while it hashes, so a login or sign-up
raises the peak to ~210 MB whatever the upload does) and none is checked for strength (zxcvbn's
dictionaries, ~12 MB, load at the first check and stay).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp

from bench.harness import _status_kib, hub_accounts, running_hub

MB = 1024 * 1024
LINE = b"IdEinstein tus memory benchmark: plain text, line after line, nothing to render.\n"
BLOCK = LINE * (MB // len(LINE)) + LINE[: MB % len(LINE)]  # exactly 1 MiB


async def _body(start: int, end: int) -> AsyncIterator[bytes]:
    position = start
    while position < end:
        offset = position % MB
        piece = BLOCK[offset : offset + min(MB - offset, end - position)]
        position += len(piece)
        yield piece


async def create(session: aiohttp.ClientSession, url: str, token: str, size: int) -> str:
    """A new upload of `size` bytes; returns its location."""
    name = base64.b64encode(b"tus-memory.txt").decode()
    kind = base64.b64encode(b"text/plain").decode()
    async with session.post(
        f"{url}/api/v1/uploads/",
        headers={
            **_tus(token),
            "Upload-Length": str(size),
            "Upload-Metadata": f"filename {name},filetype {kind}",
        },
    ) as created:
        if created.status != 201:
            raise SystemExit(f"creation refused: {created.status} {await created.text()}")
        return created.headers["Location"]


async def send(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    location: str,
    start: int,
    end: int,
    chunk: int,
) -> str:
    """PATCH bytes [start, end) in `chunk`-sized requests; returns X-File-Id (once complete)."""
    offset, file_id = start, ""
    while offset < end:
        stop = min(end, offset + chunk)
        async with session.patch(
            url + location,
            data=_body(offset, stop),
            headers={
                **_tus(token),
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        ) as response:
            if response.status != 204:
                raise SystemExit(f"PATCH refused: {response.status} {await response.text()}")
            offset = int(response.headers["Upload-Offset"])
            file_id = response.headers.get("X-File-Id", "")
    return file_id


def _tus(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}


TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=600)


async def upload(url: str, token: str, size: int, chunk: int) -> tuple[float, int, str]:
    """Create and send the upload; returns (seconds, final status, X-File-Id)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        location = await create(session, url, token, size)
        started = time.perf_counter()
        file_id = await send(session, url, token, location, 0, size, chunk)
        return time.perf_counter() - started, 204, file_id


async def first_life(url: str, token: str, size: int, until: int) -> str:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        location = await create(session, url, token, size)
        await send(session, url, token, location, 0, until, until)
        return location


async def second_life(url: str, token: str, location: str, size: int) -> tuple[int, str, str]:
    """HEAD after the restart, send the rest; (offset found, X-File-Id, stored sha256)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.head(url + location, headers=_tus(token)) as head:
            offset = int(head.headers["Upload-Offset"])
        file_id = await send(session, url, token, location, offset, size, size)
        async with session.get(
            f"{url}/api/v1/files/{file_id}", headers={"Authorization": f"Bearer {token}"}
        ) as got:
            stored = str((await got.json())["current"]["sha256"])
        return offset, file_id, stored


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    position = 0
    while position < size:
        offset = position % MB
        piece = BLOCK[offset : offset + min(MB - offset, size - position)]
        digest.update(piece)
        position += len(piece)
    return digest.hexdigest()


def report(size: int, seconds: float, pid: int, before_kib: int, file_id: str) -> None:
    peak_kib = _status_kib(pid, "VmHWM")
    rss_kib = _status_kib(pid, "VmRSS")
    print(f"uploaded          {size / MB:.0f} MiB in {seconds:.2f} s")
    print(f"throughput        {size / MB / seconds:.1f} MiB/s")
    print(f"server RSS before {before_kib / 1024:.1f} MiB")
    print(f"server RSS after  {rss_kib / 1024:.1f} MiB")
    print(f"server peak RSS   {peak_kib / 1024:.1f} MiB (VmHWM)")
    print(f"file              {file_id or '(none)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running hub (else one is started)")
    parser.add_argument("--token", help="an access token for --url")
    parser.add_argument("--pid", type=int, help="the process id of the hub at --url")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--chunk-mb", type=int, default=0, help="PATCH size (0: one PATCH)")
    parser.add_argument(
        "--clamd", action="store_true", help="scan with a real clamd and wait for the verdict"
    )
    parser.add_argument("--s3", action="store_true", help="store blobs on a loopback S3 (moto)")
    parser.add_argument(
        "--restart-at-mb",
        type=int,
        default=0,
        help="send this much, SIGKILL the server, start a new one, resume (checks the sha256)",
    )
    args = parser.parse_args()
    size = args.size_mb * MB
    chunk = args.chunk_mb * MB or size
    if args.url:
        if not (args.token and args.pid):
            parser.error("--url needs --token and --pid")
        before = _status_kib(args.pid, "VmRSS")
        seconds, _, file_id = asyncio.run(upload(args.url.rstrip("/"), args.token, size, chunk))
        report(size, seconds, args.pid, before, file_id)
        return
    with tempfile.TemporaryDirectory(prefix="tus-memory-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        env = {"UPLOAD_MAX_BYTES": str(max(size, 500 * MB))}
        if args.clamd:
            from tests.clamd import run_clamd  # the tests' clamd: test signatures, 1 GiB limits

            env["CLAMD_URL"] = stack.enter_context(run_clamd(workdir / "clamd")).url
        if args.s3:
            env.update(stack.enter_context(_s3(workdir)))
        if args.restart_at_mb:
            restart(workdir, env, size, args.restart_at_mb * MB)
            return
        with running_hub(workdir, env=env) as (proc, port):
            token = hub_accounts(workdir, port).customer_token
            before = proc.rss_kib()
            url = f"http://127.0.0.1:{port}"
            seconds, _, file_id = asyncio.run(upload(url, token, size, chunk))
            if args.clamd:
                verdict, waited = asyncio.run(_scanned(url, token, file_id))
                print(f"scan              {verdict}, {waited:.1f} s after the last byte")
            report(size, seconds, proc.pid, before, file_id)


def restart(workdir: Path, env: dict[str, str], size: int, until: int) -> None:
    with running_hub(workdir, env=env) as (proc, port):
        token = hub_accounts(workdir, port).customer_token
        location = asyncio.run(first_life(f"http://127.0.0.1:{port}", token, size, until))
        proc.popen.send_signal(signal.SIGKILL)  # no goodbye: state must already be on disk
        proc.popen.wait()
    with running_hub(workdir, env=env) as (proc, port):
        before = proc.rss_kib()
        started = time.perf_counter()
        offset, file_id, stored = asyncio.run(
            second_life(f"http://127.0.0.1:{port}", token, location, size)
        )
        seconds = time.perf_counter() - started
        print(
            f"killed after      {until / MB:.0f} MiB; "
            f"the new server's HEAD said {offset / MB:.1f} MiB"
        )
        wanted = expected_sha256(size)
        print(
            f"sha256            {'matches' if stored == wanted else 'DIFFERS'} ({stored[:16]}...)"
        )
        report(size - offset, seconds, proc.pid, before, file_id)


async def _scanned(url: str, token: str, file_id: str) -> tuple[str, float]:
    """Poll the file until clamd's verdict is in (the benchmark, not a test: polling is fine)."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/api/v1/files/{file_id}", headers=headers) as got:
                status = str((await got.json())["current"]["scan_status"])
            if status != "pending":
                return status, time.perf_counter() - started
            await asyncio.sleep(0.5)


@contextmanager
def _s3(workdir: Path) -> Iterator[dict[str, str]]:
    import boto3  # type: ignore[import-untyped]  # no stubs installed; only the test bucket

    from tests.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, run_moto_server

    with run_moto_server(workdir / "moto.log") as moto:
        boto3.client(
            "s3",
            endpoint_url=moto.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        ).create_bucket(Bucket="bench")
        yield {
            "STORAGE_URL": "s3://bench",
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }


if __name__ == "__main__":
    main()
