"""Fault drill: two real hub processes on PostgreSQL and Redis; one is SIGKILLed mid-chat.

A customer on node 1 and an agent on node 2 chat (messages, typing, read receipts and
presence cross nodes). Node 1 dies without a goodbye; the customer reconnects to node 2,
retries what was unacknowledged with the same client_msg_id, syncs, and ends up with every
message exactly once. A second customer who never comes back is declared offline once their
lease runs out.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
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
TTL = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cluster(
    migrated_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    env = {
        "DATABASE_URL": migrated_database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path / "var"),
        "PRESENCE_TTL_SECONDS": str(TTL),
        "PRESENCE_GRACE_SECONDS": "0.5",
    }
    node_1, node_2 = await asyncio.gather(
        start_serve(port=_free_port(), env=env, workdir=tmp_path, name="node-1"),
        start_serve(port=_free_port(), env=env, workdir=tmp_path, name="node-2"),
    )
    yield node_1, node_2
    await asyncio.gather(node_1.stop(), node_2.stop())


async def _retry_until(make: Any, receiver: HubClient, event: str, predicate: Any) -> Any:
    while True:
        await make()
        try:
            return await receiver.until(event, predicate, timeout=0.3)
        except TimeoutError:
            continue


async def test_a_killed_node_loses_no_message(
    cluster: tuple[ServeProcess, ServeProcess], migrated_database_url: str
) -> None:
    node_1, node_2 = cluster
    keys = KeyRing(current=signing_key(SECRET))
    customer_account = await sign_in(migrated_database_url, keys)
    ghost_account = await sign_in(migrated_database_url, keys)
    agent_account = await sign_in(migrated_database_url, keys, role=Role.EDITOR)
    clients: list[HubClient] = []

    async def connect(node: ServeProcess, token: str) -> HubClient:
        client = HubClient()
        clients.append(client)
        return await client.connect(node.url, token)

    try:
        agent = await connect(node_2, agent_account.token)
        customer = await connect(node_1, customer_account.token)
        ghost = await connect(node_1, ghost_account.token)
        assert ghost.sio.connected
        conversation_id = (await customer.call("chat:open", {"subject": "drill"}))["conversation"][
            "id"
        ]
        await agent.call("subscribe", {"room": f"conversation:{conversation_id}"})

        # Wait until cross-node fan-out works (each node's Redis listener is up).
        count = 0

        async def hello() -> Any:
            nonlocal count
            count += 1
            return await customer.call(
                "chat:send",
                {
                    "conversation_id": conversation_id,
                    "client_msg_id": f"hello-{count}",
                    "body": "hi",
                },
            )

        await _retry_until(hello, agent, "chat:message", lambda m: m["body"] == "hi")

        # Typing, read receipts and presence cross nodes.
        await customer.call("chat:typing", {"conversation_id": conversation_id, "typing": True})
        assert (await agent.until("chat:typing", lambda t: True))["user_id"] == str(
            customer_account.user_id
        )
        await agent.call("chat:read", {"conversation_id": conversation_id, "seq": 1})
        assert (
            await customer.until("chat:read", lambda r: r["user_id"] == str(agent_account.user_id))
        )["seq"] == 1

        # The conversation goes on from both sides; node 1 dies in the middle of it.
        sent: dict[str, str] = {}  # client_msg_id -> body, what the customer wants delivered
        acked: set[str] = set()

        async def customer_sends() -> None:
            for n in range(300):  # more than a fast node acks before the kill
                msg_id = f"c-{n}"
                sent[msg_id] = f"customer {n}"
                try:
                    ack = await customer.call(
                        "chat:send",
                        {
                            "conversation_id": conversation_id,
                            "client_msg_id": msg_id,
                            "body": sent[msg_id],
                        },
                        timeout=1,
                    )
                except Exception:  # noqa: BLE001 - the node is gone: stop and retry later
                    return
                if ack.get("ok"):
                    acked.add(msg_id)

        async def agent_sends() -> None:
            for n in range(20):
                await agent.call(
                    "chat:send",
                    {
                        "conversation_id": conversation_id,
                        "client_msg_id": f"a-{n}",
                        "body": f"agent {n}",
                    },
                )
                await asyncio.sleep(0.01)

        async def kill_soon() -> None:
            await asyncio.sleep(0.15)
            await node_1.kill()

        await asyncio.gather(customer_sends(), agent_sends(), kill_soon())
        assert node_1.process.returncode is not None
        assert len(acked) < 300, "node 1 died after the burst: the drill proved nothing"

        # Back on node 2: retry what was not acknowledged, then sync from what it had seen.
        seen: dict[str, dict[str, Any]] = {m["id"]: m for m in customer.pending("chat:message")}
        await customer.close()
        back = await connect(node_2, customer_account.token)
        for msg_id in sorted(set(sent) - acked):
            retry = await back.call(
                "chat:send",
                {"conversation_id": conversation_id, "client_msg_id": msg_id, "body": sent[msg_id]},
            )
            assert retry["ok"] is True
            seen[retry["message"]["id"]] = retry["message"]
        last_seq = max((m["seq"] for m in seen.values()), default=0)
        replay = await back.call("sync", {"conversations": {conversation_id: last_seq}})
        for message in replay["conversations"][conversation_id]["messages"]:
            seen[message["id"]] = message
        earlier = await back.call(
            "chat:history",
            {"conversation_id": conversation_id, "before_seq": last_seq + 1, "limit": 100},
        )
        for message in earlier["messages"]:
            seen[message["id"]] = message

        async with open_database(migrated_database_url):
            stored = await Message.filter(conversation_id=conversation_id).order_by("seq")
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))  # no gaps
        assert {str(m.id) for m in stored} == set(seen)  # the client has every message
        customer_bodies = [
            m.body for m in stored if m.client_msg_id and m.client_msg_id.startswith("c-")
        ]
        assert sorted(customer_bodies) == sorted(sent.values())  # each exactly once
        assert len([m for m in stored if (m.client_msg_id or "").startswith("a-")]) == 20

        # The ghost never came back: their lease runs out and node 2 says so.
        offline = await agent.until(
            "presence",
            lambda p: p["user_id"] == str(ghost_account.user_id) and not p["online"],
            timeout=TTL + 5,
        )
        assert offline["status"] == "offline"
    finally:
        for client in clients:
            await client.close()
