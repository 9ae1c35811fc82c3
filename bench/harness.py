"""What every benchmark needs: free ports, server processes with their CPU and peak memory,
a hub prepared with accounts, medians, and the table of ours beside the reference's."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_peers() -> None:
    """Install the Node reference servers and load generator (npm ci) once."""
    if not (PEERS / "node_modules" / ".package-lock.json").exists():
        if shutil.which("npm") is None:
            raise SystemExit("npm is needed for the reference implementations")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(PEERS)],
            check=True,
            stdout=subprocess.DEVNULL,
        )


@dataclass
class Proc:
    """A server under test: CPU seconds and peak RSS are read from /proc."""

    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@dataclass(frozen=True)
class HubAccounts:
    customer_token: str
    staff_token: str
    conversation_id: str


@contextmanager
def running_hub(workdir: Path, *, env: dict[str, str] | None = None) -> Iterator[tuple[Proc, int]]:
    """A real `ideinstein serve` on a migrated embedded database (or DATABASE_URL from env)."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATA_DIR": str(workdir / "var"),
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", secrets.token_urlsafe(48)),
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        **(env or {}),
    }
    python = sys.executable
    subprocess.run(
        [python, "-m", "api.cli", "migrate"],
        cwd=ROOT,
        env=full_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    popen = subprocess.Popen(
        [python, "-m", "api.cli", "serve", "--no-migrate"],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "hub.log").open("wb"),
    )
    proc = Proc(popen)
    try:
        wait_for_port(port)
        os.environ["BENCH_SECRET_KEY"] = full_env["SECRET_KEY"]
        yield proc, port
    finally:
        proc.stop()


@contextmanager
def running_node(script: str, *args: str) -> Iterator[tuple[Proc, int]]:
    port = free_port()
    popen = subprocess.Popen(
        ["node", str(PEERS / script), str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc = Proc(popen)
    try:
        wait_for_port(port)
        yield proc, port
    finally:
        proc.stop()


def hub_accounts(workdir: Path, port: int) -> HubAccounts:
    """A customer and an editor with open sessions, and the customer's conversation."""
    return asyncio.run(_hub_accounts(workdir, port))


async def _hub_accounts(workdir: Path, port: int) -> HubAccounts:
    from core.clock import utcnow
    from core.permissions import Role
    from core.secret_key import load_key_ring
    from core.settings import load_settings
    from core.tokens import issue_access_token
    from db.connection import open_database
    from db.models.identity import AuthSession, User

    settings = load_settings(
        data_dir=str(workdir / "var"), secret_key=os.environ["BENCH_SECRET_KEY"]
    )
    keys = load_key_ring(settings)
    tokens: dict[Role, str] = {}
    async with open_database(settings.database_url):
        for role in (Role.CUSTOMER, Role.EDITOR):
            user = await User.create(
                email=f"bench-{role.value}-{secrets.token_hex(4)}@example.com",
                role=role,
                email_verified_at=utcnow(),
            )
            session = await AuthSession.create(user=user, expires_at=utcnow() + timedelta(days=1))
            tokens[role] = issue_access_token(
                key=keys.current, user_id=str(user.id), role=role.value, session_id=str(session.id)
            )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/api/v1/conversations",
            json={"subject": "benchmark"},
            headers={"Authorization": f"Bearer {tokens[Role.CUSTOMER]}"},
        ) as response,
    ):
        response.raise_for_status()
        body = await response.json()
    return HubAccounts(
        customer_token=tokens[Role.CUSTOMER],
        staff_token=tokens[Role.EDITOR],
        conversation_id=str(body["conversation"]["id"]),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(title: str, rows: Sequence[tuple[str, float, float, bool]]) -> str:
    """Rows of (metric, ours, reference, higher_is_better); the ratio says how we compare
    (> 1 is better for us, whichever way the metric points)."""
    lines = [
        f"### {title}",
        "",
        "| metric | ours | reference | ours vs reference |",
        "|---|---:|---:|---:|",
    ]
    for metric, ours, reference, higher_is_better in rows:
        if ours and reference:
            ratio = ours / reference if higher_is_better else reference / ours
            ratio_text = f"{ratio:.2f}x"
        else:
            ratio_text = "n/a"
        lines.append(f"| {metric} | {ours:,.1f} | {reference:,.1f} | {ratio_text} |")
    text = "\n".join(lines)
    print(text)
    return text
