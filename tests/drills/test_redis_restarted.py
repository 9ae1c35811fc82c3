"""Fault drill: the hub's Redis is restarted in the middle of a chat.

A private redis-server (a free port, nothing on disk) serves a real `ideinstein serve` on
PostgreSQL. A customer chats with an agent over Socket.IO before, during and after the
restart. Every send gets an ack (ok, or an error the client can retry), the hub recovers by
itself within 5 s of Redis coming back (live fan-out through Redis works again), and no
message is lost: each one the customer meant to send is stored exactly once and comes back
in a sync.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.permissions import Role
from core.tokens import KeyRing, signing_key
from db.connection import open_database
from db.models.chat import Message
from tests.identity import sign_in
from tests.processes import ServeProcess, start_serve
from tests.sockets import HubClient

pytestmark = pytest.mark.databases("postgres")

SECRET = "drill-secret-drill-secret-drill-secret-42"
RECOVERY_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """redis-server on a port of its own; stop() and start() again on the same port."""

    def __init__(self, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own server on loopback
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(_free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def hub(
    migrated_database_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> AsyncIterator[ServeProcess]:
    env = {
        "DATABASE_URL": migrated_database_url,
        "REDIS_URL": private_redis.url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path / "var"),
    }
    served = await start_serve(port=_free_port(), env=env, workdir=tmp_path, name="hub")
    yield served
    await served.stop()


async def test_a_redis_restart_loses_no_message(
    hub: ServeProcess, private_redis: PrivateRedis, migrated_database_url: str
) -> None:
    keys = KeyRing(current=signing_key(SECRET))
    customer_account = await sign_in(migrated_database_url, keys)
    agent_account = await sign_in(migrated_database_url, keys, role=Role.EDITOR)
    clients: list[HubClient] = []

    async def connect(token: str) -> HubClient:
        client = HubClient()
        clients.append(client)
        return await client.connect(hub.url, token)

    sent: dict[str, str] = {}  # client_msg_id -> body: what the customer wants delivered
    acked: set[str] = set()

    async def send(client: HubClient, msg_id: str, conversation_id: str) -> dict[str, Any]:
        sent[msg_id] = f"body of {msg_id}"
        ack: dict[str, Any] = await client.call(
            "chat:send",
            {"conversation_id": conversation_id, "client_msg_id": msg_id, "body": sent[msg_id]},
        )
        assert isinstance(ack, dict)
        assert "ok" in ack  # an ack, never a crash: ok, or an error to retry
        if ack["ok"]:
            acked.add(msg_id)
        else:
            assert isinstance(ack["error"]["code"], str)
        return ack

    try:
        agent = await connect(agent_account.token)
        customer = await connect(customer_account.token)
        opened = await customer.call("chat:open", {"subject": "redis drill"})
        conversation_id = opened["conversation"]["id"]
        await agent.call("subscribe", {"room": f"conversation:{conversation_id}"})

        # given a chat that works, live through Redis
        for n in range(5):
            assert (await send(customer, f"before-{n}", conversation_id))["ok"] is True
        await agent.until("chat:message", lambda m: m["client_msg_id"] == "before-4")

        # when Redis goes away in the middle of it
        await asyncio.to_thread(private_redis.stop)
        for n in range(5):
            if not customer.sio.connected:
                customer = await connect(customer_account.token)
            during = await send(customer, f"during-{n}", conversation_id)
            # stored in PostgreSQL, so acknowledged: only the live fan-out waits for Redis
            assert during["ok"] is True, during

        # and comes back: the hub recovers by itself (no restart) within 5 s
        await asyncio.to_thread(private_redis.start)
        back_at = time.monotonic()
        recovered = False
        n = 0
        while time.monotonic() - back_at < RECOVERY_SECONDS:
            if not customer.sio.connected:
                customer = await connect(customer_account.token)
            if not agent.sio.connected:
                agent = await connect(agent_account.token)
                await agent.call("subscribe", {"room": f"conversation:{conversation_id}"})
            msg_id = f"after-{n}"
            n += 1
            ack = await send(customer, msg_id, conversation_id)
            if not ack["ok"]:
                continue
            try:
                await agent.until(
                    "chat:message", lambda m, i=msg_id: m["client_msg_id"] == i, timeout=0.5
                )
            except TimeoutError:
                continue
            recovered = True
            break
        assert recovered, "no live delivery within 5 s of Redis coming back"
        assert hub.process.returncode is None

        # the customer retries what was refused, with the same client_msg_id
        for msg_id in sorted(set(sent) - acked):
            assert (await send(customer, msg_id, conversation_id))["ok"] is True

        # then every message is stored exactly once, in order, and a sync returns them all
        async with open_database(migrated_database_url):
            stored = await Message.filter(conversation_id=conversation_id).order_by("seq")
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
        by_client_id = [m.client_msg_id for m in stored if m.client_msg_id]
        assert sorted(by_client_id) == sorted(sent)
        replay = await customer.call("sync", {"conversations": {conversation_id: 0}})
        replayed = replay["conversations"][conversation_id]["messages"]
        assert {m["id"] for m in replayed} == {str(m.id) for m in stored}
    finally:
        for client in clients:
            await client.close()
