"""Two hub nodes in one process, sharing PostgreSQL/SQLite and Redis: numbering, fan-out,
presence and dashboard pushes stay consistent across them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import HUB, KEYS, SETTINGS
from core.permissions import Role
from db.connection import open_database
from db.models.chat import Message
from tests.conftest import SettingsFactory
from tests.identity import SignedIn, sign_in
from tests.sockets import HubClient

ServerFactory = Callable[..., Awaitable[TestServer]]

# Several nodes share one database only in production, on PostgreSQL; SQLite is the embedded,
# single-process mode.
pytestmark = pytest.mark.databases("postgres")


@pytest.fixture
async def nodes(
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> tuple[TestServer, TestServer]:
    settings = make_settings(
        database_url=migrated_database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        secret_key="nodes-share-a-key-nodes-share-a-key-123",
        presence_grace_seconds=0.2,
    )
    return await aiohttp_server(create_app(settings)), await aiohttp_server(create_app(settings))


@pytest.fixture
async def clients() -> AsyncIterator[list[HubClient]]:
    made: list[HubClient] = []
    yield made
    for client in made:
        await client.close()


async def _account(server: TestServer, role: Role = Role.CUSTOMER) -> SignedIn:
    return await sign_in(server.app[SETTINGS].database_url, server.app[KEYS], role=role)


async def _connect(server: TestServer, who: SignedIn, made: list[HubClient]) -> HubClient:
    client = HubClient()
    made.append(client)
    return await client.connect(str(server.make_url("/")), who.token)


async def _until_delivered(
    sender: Callable[[], Awaitable[Any]],
    receiver: HubClient,
    event: str,
    predicate: Callable[[Any], bool] = lambda data: True,
) -> Any:
    """The Redis manager subscribes in the background after start: retry the first delivery."""
    while True:
        await sender()
        try:
            return await receiver.until(event, predicate, timeout=0.3)
        except TimeoutError:
            continue


async def test_chat_crosses_nodes(
    nodes: tuple[TestServer, TestServer], clients: list[HubClient]
) -> None:
    node_a, node_b = nodes
    customer = await _connect(node_a, await _account(node_a), clients)
    agent = await _connect(node_b, await _account(node_b, Role.EDITOR), clients)
    conversation_id = (await customer.call("chat:open", {"subject": "cross"}))["conversation"]["id"]
    assert (await agent.call("subscribe", {"room": f"conversation:{conversation_id}"}))["ok"]

    n = 0

    async def send() -> Any:
        nonlocal n
        n += 1
        return await customer.call(
            "chat:send",
            {"conversation_id": conversation_id, "client_msg_id": f"m{n}", "body": f"hello {n}"},
        )

    first = await asyncio.wait_for(_until_delivered(send, agent, "chat:message"), 10)
    assert first["body"].startswith("hello")
    typing = await customer.call(
        "chat:typing", {"conversation_id": conversation_id, "typing": True}
    )
    assert typing["ok"]
    assert (await agent.next("chat:typing"))["typing"] is True
    await agent.call("chat:read", {"conversation_id": conversation_id, "seq": first["seq"]})
    receipt = await customer.until("chat:read", lambda r: r["user_id"] != "")
    assert receipt["seq"] == first["seq"]


async def test_concurrent_sends_through_both_nodes_number_without_gaps(
    nodes: tuple[TestServer, TestServer], clients: list[HubClient]
) -> None:
    node_a, node_b = nodes
    account = await _account(node_a)
    on_a = await _connect(node_a, account, clients)
    on_b = await _connect(node_b, account, clients)
    agent = await _connect(node_b, await _account(node_b, Role.EDITOR), clients)
    conversation_id = (await on_a.call("chat:open", {}))["conversation"]["id"]

    async def burst(client: HubClient, tag: str) -> list[Any]:
        return [
            await client.call(
                "chat:send",
                {"conversation_id": conversation_id, "client_msg_id": f"{tag}{i}", "body": tag},
            )
            for i in range(15)
        ]

    async def agent_burst() -> list[Any]:
        return [
            await agent.call(
                "chat:send",
                {"conversation_id": conversation_id, "client_msg_id": f"s{i}", "body": "staff"},
            )
            for i in range(10)
        ]

    acks = [
        a
        for batch in await asyncio.gather(burst(on_a, "a"), burst(on_b, "b"), agent_burst())
        for a in batch
    ]
    assert all(a["ok"] for a in acks)
    assert sorted(a["message"]["seq"] for a in acks) == list(range(1, 41))
    async with open_database(node_a.app[SETTINGS].database_url):
        seqs = (
            await Message.filter(conversation_id=conversation_id)
            .order_by("seq")
            .values_list("seq", flat=True)
        )
    assert list(seqs) == list(range(1, 41))


async def test_same_client_msg_id_on_two_nodes_is_stored_once(
    nodes: tuple[TestServer, TestServer], clients: list[HubClient]
) -> None:
    node_a, node_b = nodes
    account = await _account(node_a)
    on_a = await _connect(node_a, account, clients)
    on_b = await _connect(node_b, account, clients)
    conversation_id = (await on_a.call("chat:open", {}))["conversation"]["id"]
    payload = {"conversation_id": conversation_id, "client_msg_id": "retry-me", "body": "once"}
    first, second = await asyncio.gather(
        on_a.call("chat:send", payload), on_b.call("chat:send", payload)
    )
    assert first["message"]["id"] == second["message"]["id"]
    assert sorted([first["duplicate"], second["duplicate"]]) == [False, True]


async def test_presence_crosses_nodes(
    nodes: tuple[TestServer, TestServer], clients: list[HubClient]
) -> None:
    node_a, node_b = nodes
    agent = await _connect(node_b, await _account(node_b, Role.EDITOR), clients)
    account = await _account(node_a)
    user = str(account.user_id)

    async def connect_customer() -> Any:
        client = await _connect(node_a, account, clients)
        await client.close()

    online = await asyncio.wait_for(
        _until_delivered(connect_customer, agent, "presence", lambda p: p["user_id"] == user), 10
    )
    assert online["user_id"] == user
    final = await agent.until(
        "presence", lambda p: p["user_id"] == user and not p["online"], timeout=5
    )
    assert final["status"] == "offline"


async def test_dashboard_events_are_not_doubled_across_nodes(
    nodes: tuple[TestServer, TestServer], clients: list[HubClient]
) -> None:
    node_a, node_b = nodes
    admin = await _connect(node_a, await _account(node_a, Role.ADMIN), clients)
    await admin.call("subscribe", {"room": "dashboard"})
    bus_b = node_b.app[HUB].bus
    marker = uuid.uuid4().hex

    async def publish() -> Any:
        return await bus_b.emit("form.submitted", {"marker": marker})

    got = await asyncio.wait_for(_until_delivered(publish, admin, "dashboard:event"), 10)
    assert got["event"]["data"]["marker"] == marker
    await asyncio.sleep(0.2)
    extra = [e for e in admin.pending("dashboard:event") if e["event"]["id"] == got["event"]["id"]]
    assert extra == []
