"""Memory of a big tus upload: one file (500 MB by default) sent over loopback to a hub, then
the hub's peak RSS (VmHWM in /proc/<pid>/status) and the throughput are printed.

    python -m bench.tus_memory                      # starts `ideinstein serve` (embedded mode)
    python -m bench.tus_memory --size-mb 100
    python -m bench.tus_memory --url http://127.0.0.1:8000 --token ACCESS_JWT --pid 1234

The body is plain text made on the fly (accepted as a `text` file, which nothing renders), sent
as one streamed PATCH (what tus-js-client does by default) or in --chunk-mb pieces. The server
must hold it in bounded memory: its peak RSS should not grow with the size of the file.

The peak is the upload's: the server's VmHWM (peak RSS) is reset just before the upload
starts (`/proc/<pid>/clear_refs`, 5) and read after it, so what start-up or an earlier sign-in
touched does not count (argon2id takes 64 MiB while it hashes a password and gives it back).
`--sign-in` first signs the customer in through the API, as a real uploader would. The
accounts themselves are written straight to the database; no password is checked for
strength (zxcvbn's dictionaries, ~12 MB, load at the first check and stay).
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
from urllib.parse import urlsplit

import aiohttp

from bench.harness import _status_kib, hub_accounts, running_hub

MB = 1024 * 1024
LINE = b"IdEinstein tus memory benchmark: plain text, line after line, nothing to render.\n"
BLOCK = LINE * (MB // len(LINE)) + LINE[: MB % len(LINE)]  # exactly 1 MiB


async def _body(start: int, end: int, shift: int = 0) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the endless text; `shift` starts it that far in (other content)."""
    for piece in _pieces(start + shift, end + shift):
        yield piece


def _pieces(start: int, end: int) -> Iterator[bytes]:
    position = start
    while position < end:
        offset = position % MB
        piece = BLOCK[offset : offset + min(MB - offset, end - position)]
        position += len(piece)
        yield piece


async def create(
    session: aiohttp.ClientSession, url: str, token: str, size: int, file_id: str = ""
) -> str:
    """A new upload of `size` bytes (a new version of `file_id` if given); returns its
    location."""
    name = base64.b64encode(b"tus-memory.txt").decode()
    kind = base64.b64encode(b"text/plain").decode()
    metadata = f"filename {name},filetype {kind}"
    if file_id:
        metadata += f",file_id {base64.b64encode(file_id.encode()).decode()}"
    async with session.post(
        f"{url}/api/v1/uploads/",
        headers={
            **_tus(token),
            "Upload-Length": str(size),
            "Upload-Metadata": metadata,
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
    shift: int = 0,
) -> str:
    """PATCH bytes [start, end) in `chunk`-sized requests; returns X-File-Id (once complete)."""
    offset, file_id = start, ""
    while offset < end:
        stop = min(end, offset + chunk)
        async with session.patch(
            url + location,
            data=_body(offset, stop, shift),
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


def expected_sha256(size: int, shift: int = 0) -> str:
    digest = hashlib.sha256()
    for piece in _pieces(shift, size + shift):
        digest.update(piece)
    return digest.hexdigest()


VERSION_SHIFT = 7  # version 2's content: the same text, started 7 bytes in


async def version_and_share(
    url: str, token: str, file_id: str, size: int, *, scanned: bool
) -> None:
    """Upload version 2 of the file, wait for its scan, share it by link (one download) and
    download it through the link, hashing as it streams; prints what was found."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        location = await create(session, url, token, size, file_id=file_id)
        started = time.perf_counter()
        await send(session, url, token, location, 0, size, size, VERSION_SHIFT)
        print(f"version 2         {size / MB:.0f} MiB in {time.perf_counter() - started:.2f} s")
    if scanned:
        verdict, waited = await _scanned(url, token, file_id)
        print(f"version 2 scan    {verdict}, {waited:.1f} s after the last byte")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{url}/api/v1/files/{file_id}", headers=headers) as got:
            current = (await got.json())["current"]
        async with session.post(
            f"{url}/api/v1/files/{file_id}/shares", json={"max_downloads": 1}, headers=headers
        ) as made:
            if made.status != 201:
                raise SystemExit(f"share refused: {made.status} {await made.text()}")
            # The link is on PUBLIC_URL; this hub listens elsewhere: keep its path.
            parts = urlsplit((await made.json())["download_url"])
            link = url + parts.path + (f"?{parts.query}" if parts.query else "")
        digest = hashlib.sha256()
        started = time.perf_counter()
        async with session.get(link) as download:
            if download.status != 200:
                raise SystemExit(f"share download refused: {download.status}")
            async for piece in download.content.iter_chunked(MB):
                digest.update(piece)
        seconds = time.perf_counter() - started
        async with session.get(link) as again:
            second_status = again.status
    wanted = expected_sha256(size, VERSION_SHIFT)
    print(
        f"versions          current is {current['number']}, sha256 "
        f"{'matches' if current['sha256'] == wanted else 'DIFFERS'}"
    )
    print(
        f"share link        downloaded in {seconds:.2f} s, sha256 "
        f"{'matches' if digest.hexdigest() == wanted else 'DIFFERS'}; "
        f"a second download (limit 1) got {second_status}"
    )


def reset_peak(pid: int) -> int:
    """The server's peak RSS so far (KiB); then its VmHWM starts again from the current RSS."""
    peak = _status_kib(pid, "VmHWM")
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")
    return peak


def report(
    size: int, seconds: float, pid: int, before_kib: int, file_id: str, earlier_peak_kib: int
) -> None:
    peak_kib = _status_kib(pid, "VmHWM")
    rss_kib = _status_kib(pid, "VmRSS")
    print(f"uploaded          {size / MB:.0f} MiB in {seconds:.2f} s")
    print(f"throughput        {size / MB / seconds:.1f} MiB/s")
    print(f"server peak before the upload {earlier_peak_kib / 1024:.1f} MiB")
    print(f"server RSS before {before_kib / 1024:.1f} MiB")
    print(f"server RSS after  {rss_kib / 1024:.1f} MiB")
    print(f"server peak RSS   {peak_kib / 1024:.1f} MiB (VmHWM during the upload)")
    print(f"file              {file_id or '(none)'}")


async def password_account(workdir: Path) -> tuple[str, str]:
    """A verified customer with a password (hashed here, in this process), for --sign-in."""
    import os
    import secrets

    from core.clock import utcnow
    from core.passwords import hash_password
    from core.permissions import Role
    from core.settings import load_settings
    from db.connection import open_database
    from db.models.identity import User

    settings = load_settings(
        data_dir=str(workdir / "var"), secret_key=os.environ["BENCH_SECRET_KEY"]
    )
    email = f"bench-uploader-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    async with open_database(settings.database_url):
        await User.create(
            email=email,
            role=Role.CUSTOMER,
            email_verified_at=utcnow(),
            password_hash=hash_password(password),
        )
    return email, password


async def sign_in(url: str, email: str, password: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/api/v1/auth/login", json={"email": email, "password": password}
        ) as resp,
    ):
        body = await resp.json()
        if resp.status != 200:
            raise SystemExit(f"sign-in failed: {resp.status} {body}")
        return str(body["access_token"])


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
    parser.add_argument(
        "--sign-in", action="store_true", help="sign the customer in through the API first"
    )
    parser.add_argument(
        "--version-and-share",
        action="store_true",
        help="then upload version 2, share it by link and download it through the link",
    )
    args = parser.parse_args()
    size = args.size_mb * MB
    chunk = args.chunk_mb * MB or size
    if args.url:
        if not (args.token and args.pid):
            parser.error("--url needs --token and --pid")
        earlier = reset_peak(args.pid)
        before = _status_kib(args.pid, "VmRSS")
        seconds, _, file_id = asyncio.run(upload(args.url.rstrip("/"), args.token, size, chunk))
        report(size, seconds, args.pid, before, file_id, earlier)
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
            url = f"http://127.0.0.1:{port}"
            if args.sign_in:
                email, password = asyncio.run(password_account(workdir))
                token = asyncio.run(sign_in(url, email, password))
            earlier = reset_peak(proc.pid)
            before = proc.rss_kib()
            seconds, _, file_id = asyncio.run(upload(url, token, size, chunk))
            report(size, seconds, proc.pid, before, file_id, earlier)
            if args.clamd:
                verdict, waited = asyncio.run(_scanned(url, token, file_id))
                print(f"scan              {verdict}, {waited:.1f} s after the last byte")
            if args.version_and_share:
                asyncio.run(version_and_share(url, token, file_id, size, scanned=args.clamd))
                peak = _status_kib(proc.pid, "VmHWM")
                print(f"server peak RSS   {peak / 1024:.1f} MiB (VmHWM since the first upload)")


def restart(workdir: Path, env: dict[str, str], size: int, until: int) -> None:
    with running_hub(workdir, env=env) as (proc, port):
        token = hub_accounts(workdir, port).customer_token
        location = asyncio.run(first_life(f"http://127.0.0.1:{port}", token, size, until))
        proc.popen.send_signal(signal.SIGKILL)  # no goodbye: state must already be on disk
        proc.popen.wait()
    with running_hub(workdir, env=env) as (proc, port):
        earlier = reset_peak(proc.pid)
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
        report(size - offset, seconds, proc.pid, before, file_id, earlier)


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
