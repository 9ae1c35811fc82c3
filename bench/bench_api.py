"""API: an authenticated `GET /api/v1/conversations` and a chat `POST
/api/v1/conversations/{id}/messages` (each with a fresh client_msg_id) on PostgreSQL, under
wrk (Debian's `wrk`, Lua scripts for the header and the body): requests/s and p99. The hub runs
on a database of its own (`bench_<random>` on the PostgreSQL of BENCH_POSTGRES_URL, default
the tests' 127.0.0.1 server), dropped afterwards.

The reference is a ceiling, not a competitor: a minimal aiohttp handler on uvloop that returns
the same JSON bodies (captured from our hub) with no authentication, no database and no
middleware. Medians of BENCH_RUNS runs (default 3).

    python -m bench.bench_api
    python -m bench.bench_api --reference-server PORT BODIES_JSON   (the ceiling server)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from bench.harness import (
    HubAccounts,
    Proc,
    free_port,
    median,
    print_table,
    running_hub,
    wait_for_port,
)

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = int(os.environ.get("BENCH_API_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_API_CONNECTIONS", "32"))
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")

USERS = int(os.environ.get("BENCH_API_USERS", "1000"))

# Requests rotate over USERS customers (token, own conversation): the per-user API budget
# (600 a minute) is not what is measured. It must not be reached: 3 GET runs then 3 POST runs
# of 10 s at up to ~3,000 requests/s come to about 600 a user a minute with 300 users; 1,000
# leave a wide margin (a 429 would count as a non-2xx response below and inflate the rate).
# Each POST carries a fresh client_msg_id (a random per-thread prefix and a counter): every
# one stores a message.
LUA = """
local tokens = {{{tokens}}}
local conversations = {{{conversations}}}
local counter = 0
local prefix = ""
function init(args)
  math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16))
  counter = math.random(1, #tokens)
  prefix = tostring(math.random(1, 1e9))
end
function request()
  counter = counter + 1
  local i = counter % #tokens + 1
  local headers = {{["Authorization"] = "Bearer " .. tokens[i]}}
  if "{method}" == "GET" then
    return wrk.format("GET", "/api/v1/conversations", headers)
  end
  headers["Content-Type"] = "application/json"
  local body = '{{"client_msg_id":"b' .. prefix .. '-' .. counter ..
    '","body":"benchmark message"}}'
  local path = "/api/v1/conversations/" .. conversations[i] .. "/messages"
  return wrk.format("POST", path, headers, body)
end
"""


def customer_accounts(workdir: Path, port: int, count: int) -> list[HubAccounts]:
    """`count` customers with open sessions, each with a conversation opened over the API."""
    return asyncio.run(_customer_accounts(workdir, port, count))


async def _customer_accounts(workdir: Path, port: int, count: int) -> list[HubAccounts]:
    from datetime import timedelta

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
    tokens: list[str] = []
    async with open_database(settings.database_url):
        run = secrets.token_hex(4)
        for n in range(count):
            user = await User.create(
                email=f"bench-{run}-{n}@example.com",
                role=Role.CUSTOMER,
                email_verified_at=utcnow(),
            )
            session = await AuthSession.create(user=user, expires_at=utcnow() + timedelta(days=1))
            tokens.append(
                issue_access_token(
                    key=keys.current,
                    user_id=str(user.id),
                    role=Role.CUSTOMER.value,
                    session_id=str(session.id),
                )
            )
    gate = asyncio.Semaphore(8)

    async def open_conversation(http: aiohttp.ClientSession, token: str) -> HubAccounts:
        async with (
            gate,
            http.post(
                f"http://127.0.0.1:{port}/api/v1/conversations",
                json={"subject": "benchmark"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            response.raise_for_status()
            body = await response.json()
        return HubAccounts(
            customer_token=token, staff_token="", conversation_id=str(body["conversation"]["id"])
        )

    async with aiohttp.ClientSession() as http:
        return list(await asyncio.gather(*(open_conversation(http, t) for t in tokens)))


def lua(method: str, accounts: list[HubAccounts]) -> str:
    return LUA.format(
        method=method,
        tokens=", ".join(f'"{a.customer_token}"' for a in accounts),
        conversations=", ".join(f'"{a.conversation_id}"' for a in accounts),
    )


@contextmanager
def bench_database() -> Iterator[str]:
    """A database of its own on the PostgreSQL server, dropped afterwards."""
    name = f"bench_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def wrk(url: str, script: Path) -> tuple[float, float, int]:
    """(requests/s, p99 ms, non-2xx responses) of one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, float(p99.group(1)) * scale, int(bad.group(1)) if bad else 0


async def _capture(url: str, token: str, conversation_id: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{url}/api/v1/conversations") as got:
            got.raise_for_status()
            listing = await got.text()
        async with http.post(
            f"{url}/api/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": "capture", "body": "benchmark message"},
        ) as sent:
            sent.raise_for_status()
            message = await sent.text()
    return {"get": listing, "post": message}


@contextmanager
def reference_server(bodies: Path) -> Iterator[tuple[Proc, int]]:
    port = free_port()
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_api",
            "--reference-server",
            str(port),
            str(bodies),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
    )
    proc = Proc(popen)
    try:
        wait_for_port(port)
        yield proc, port
    finally:
        proc.stop()


def serve_reference(port: int, bodies_path: Path) -> None:
    import uvloop
    from aiohttp import web

    bodies = json.loads(bodies_path.read_text())

    async def listing(request: web.Request) -> web.Response:
        return web.Response(text=bodies["get"], content_type="application/json")

    async def send(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=bodies["post"], status=201, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/conversations", listing)
    app.router.add_post("/api/v1/conversations/{id}/messages", send)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian package wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as t, bench_database() as db_url:
        tmp = Path(t)
        previous = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = db_url  # the hub and customer_accounts both read it
        try:
            with running_hub(tmp, env={"DATABASE_URL": db_url}) as (_, port):
                accounts = customer_accounts(tmp, port, USERS)
                url = f"http://127.0.0.1:{port}"
                first = accounts[0]
                bodies = asyncio.run(_capture(url, first.customer_token, first.conversation_id))
                (tmp / "bodies.json").write_text(json.dumps(bodies))
                get_lua = tmp / "get.lua"
                get_lua.write_text(lua("GET", accounts))
                post_lua = tmp / "post.lua"
                post_lua.write_text(lua("POST", accounts))
                ours_get = [wrk(url, get_lua) for _ in range(RUNS)]
                ours_post = [wrk(url, post_lua) for _ in range(RUNS)]
        finally:
            if previous is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = previous
        with reference_server(tmp / "bodies.json") as (_, ref_port):
            ref = f"http://127.0.0.1:{ref_port}"
            ref_get = [wrk(ref, get_lua) for _ in range(RUNS)]
            ref_post = [wrk(ref, post_lua) for _ in range(RUNS)]
    print_table(
        f"API on PostgreSQL under wrk ({CONNECTIONS} connections, 2 threads, {SECONDS} s, "
        f"median of {RUNS}; reference: a CEILING, a bare aiohttp+uvloop handler returning the "
        f"same JSON without auth or database)",
        [
            ("GET /conversations req/s", _med(ours_get, 0), _med(ref_get, 0), True),
            ("GET /conversations p99 ms", _med(ours_get, 1), _med(ref_get, 1), False),
            ("POST chat message req/s", _med(ours_post, 0), _med(ref_post, 0), True),
            ("POST chat message p99 ms", _med(ours_post, 1), _med(ref_post, 1), False),
        ],
    )
    failed = sum(r[2] for r in ours_get + ours_post)
    print(f"ours: non-2xx responses in all runs: {failed} (rotating over {USERS} customers)")


def _med(results: list[tuple[float, float, int]], index: int) -> float:
    return median([float(r[index]) for r in results])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--reference-server":
        serve_reference(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
