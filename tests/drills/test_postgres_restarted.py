"""Fault drill: the hub's PostgreSQL goes away and comes back.

A private PostgreSQL cluster (initdb + pg_ctl from /usr/lib/postgresql/*/bin, on a free port,
in a folder of this test's) serves a real `ideinstein serve`. While the server is down,
requests fail cleanly: 503 with the stable code `database_unavailable`, never a 500. When it
is back, the same hub process answers again, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.tokens import KeyRing, signing_key
from db.migrate import apply_migrations
from tests.identity import sign_in
from tests.processes import ServeProcess, start_serve

SECRET = "drill-secret-drill-secret-drill-secret-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries are not installed (CI=true)")
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
    return Path(found[-1]).parent


@dataclass
class Cluster:
    bin: Path
    data: Path
    port: int
    user: str | None  # initdb refuses root: run as this user then

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "-l",
            str(self.data / "server.log"),
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bin_dir = _postgres_bin()
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root and there is no postgres user for initdb")
    root = Path(tempfile.mkdtemp(prefix="drill-pg-"))
    data = root / "data"
    data.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    made = Cluster(bin=bin_dir, data=data, port=_free_port(), user=user)
    made._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    made.start()
    try:
        yield made
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            made.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def hub(cluster: Cluster, tmp_path: Path) -> AsyncIterator[ServeProcess]:
    await apply_migrations(cluster.url)
    env = {
        "DATABASE_URL": cluster.url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path / "var"),
    }
    served = await start_serve(port=_free_port(), env=env, workdir=tmp_path, name="hub")
    yield served
    await served.stop()


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def test_requests_fail_with_503_while_postgres_is_down_and_recover(
    cluster: Cluster, hub: ServeProcess
) -> None:
    account = await sign_in(cluster.url, KeyRing(current=signing_key(SECRET)))
    url = f"{hub.url}/api/v1/conversations"
    async with aiohttp.ClientSession(headers=account.headers) as session:
        # given a working hub
        async with session.post(url, json={"subject": "before"}) as opened:
            assert opened.status == 201, await opened.text()
        status, body = await _get(session, url)
        assert status == 200
        assert len(body["items"]) == 1

        # when PostgreSQL stops
        await asyncio.to_thread(cluster.stop)

        # then every request fails cleanly, reads and writes alike
        for _ in range(3):
            status, body = await _get(session, url)
            assert status == 503, body
            assert body["error"]["code"] == "database_unavailable"
        async with session.post(url, json={"subject": "during"}) as refused:
            assert refused.status == 503
            assert (await refused.json())["error"]["code"] == "database_unavailable"

        # when it is back, the same hub process answers again (the pool reconnects)
        await asyncio.to_thread(cluster.start)
        recovered = None
        for _ in range(50):  # bounded: 5 s at most
            status, body = await _get(session, url)
            if status == 200:
                recovered = body
                break
            assert status == 503, body
            await asyncio.sleep(0.1)  # the pool's reconnect: nothing to wait on but the clock
        assert recovered is not None, "the hub did not recover within 5 s"
        assert [c["subject"] for c in recovered["items"]] == ["before"]
        async with session.post(url, json={"subject": "after"}) as opened:
            assert opened.status == 201
        assert hub.process.returncode is None


def test_only_database_connection_errors_count_as_database_unavailable() -> None:
    from tortoise.exceptions import DBConnectionError, IntegrityError

    from api.middleware import database_unavailable

    try:
        raise ConnectionRefusedError(111, "refused")  # e.g. an HTTP call to another service
    except ConnectionRefusedError as exc:
        outside = exc
    wrapped = DBConnectionError("pool")
    wrapped.__cause__ = outside

    assert database_unavailable(DBConnectionError("gone")) is True
    assert database_unavailable(wrapped) is True
    assert database_unavailable(outside) is False
    assert database_unavailable(IntegrityError("duplicate")) is False
    assert database_unavailable(ValueError("bad")) is False
