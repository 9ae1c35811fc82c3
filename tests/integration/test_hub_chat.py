"""Live support chat through the real gateway on the real databases: open, send, receive,
typing, read receipts, history, idempotency, sync after a disconnect, refusals."""

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
from db.models.chat import Conversation, Message
from tests.conftest import SettingsFactory
from tests.identity import SignedIn, sign_in
from tests.sockets import HubClient

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def server(
    aiohttp_server: ServerFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> TestServer:
    settings = make_settings(
        database_url=migrated_database_url, chat_max_body_chars=50, presence_grace_seconds=0.2
    )
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def clients() -> AsyncIterator[list[HubClient]]:
    made: list[HubClient] = []
    yield made
    for client in made:
        await client.close()


class People:
    def __init__(self, server: TestServer, clients: list[HubClient]) -> None:
        self.server = server
        self.clients = clients

    async def account(self, role: Role = Role.CUSTOMER) -> SignedIn:
        return await sign_in(
            self.server.app[SETTINGS].database_url, self.server.app[KEYS], role=role
        )

    async def connect(self, who: SignedIn) -> HubClient:
        client = HubClient()
        self.clients.append(client)
        return await client.connect(str(self.server.make_url("/")), who.token)


@pytest.fixture
def people(server: TestServer, clients: list[HubClient]) -> People:
    return People(server, clients)


async def _open(customer: HubClient, subject: str = "Quote for a bracket") -> str:
    ack = await customer.call("chat:open", {"subject": subject})
    assert ack["ok"] is True, ack
    return str(ack["conversation"]["id"])


async def _send(
    client: HubClient, conversation_id: str, body: str, msg_id: str | None = None
) -> Any:
    return await client.call(
        "chat:send",
        {
            "conversation_id": conversation_id,
            "client_msg_id": msg_id or uuid.uuid4().hex,
            "body": body,
        },
    )


async def test_customer_and_staff_chat(people: People) -> None:
    customer = await people.connect(await people.account())
    agent_account = await people.account(Role.EDITOR)
    agent = await people.connect(agent_account)

    conversation_id = await _open(customer)
    queued = await agent.until("chat:conversation", lambda c: c["id"] == conversation_id)
    assert queued["status"] == "open"
    assert (await agent.call("subscribe", {"room": f"conversation:{conversation_id}"}))["ok"]

    sent = await _send(customer, conversation_id, "Hello, can you quote 20 brackets?")
    assert sent["ok"] is True
    assert sent["message"]["seq"] == 1
    assert sent["duplicate"] is False
    received = await agent.next("chat:message")
    assert received == sent["message"]
    assert (await customer.next("chat:message"))["id"] == sent["message"]["id"]  # own echo

    reply = await _send(agent, conversation_id, "<b>Sure</b>, send the STEP file.")
    assert reply["message"]["seq"] == 2
    got = await customer.until("chat:message", lambda m: m["seq"] == 2)
    assert got["body"] == "<b>Sure</b>, send the STEP file."  # stored as text, escaped by renderers
    assert got["sender_id"] == str(agent_account.user_id)

    typing = await customer.call(
        "chat:typing", {"conversation_id": conversation_id, "typing": True}
    )
    assert typing == {"ok": True, "relayed": True}
    seen = await agent.next("chat:typing")
    assert seen["typing"] is True
    throttled = await customer.call(
        "chat:typing", {"conversation_id": conversation_id, "typing": True}
    )
    assert throttled == {"ok": True, "relayed": False}

    read = await customer.call("chat:read", {"conversation_id": conversation_id, "seq": 2})
    assert read == {"ok": True, "seq": 2}
    receipt = await agent.until("chat:read", lambda r: r["seq"] == 2)
    assert receipt["conversation_id"] == conversation_id
    backwards = await customer.call("chat:read", {"conversation_id": conversation_id, "seq": 1})
    assert backwards["seq"] == 2  # read markers never move back


async def test_send_is_idempotent_on_client_msg_id(people: People, server: TestServer) -> None:
    customer = await people.connect(await people.account())
    conversation_id = await _open(customer)
    first = await _send(customer, conversation_id, "once", msg_id="m-1")
    again = await _send(customer, conversation_id, "once", msg_id="m-1")
    assert again["duplicate"] is True
    assert again["message"]["id"] == first["message"]["id"]
    async with open_database(server.app[SETTINGS].database_url):
        assert await Message.filter(conversation_id=conversation_id).count() == 1


async def test_bad_events_get_error_acks_and_the_connection_survives(
    people: People, server: TestServer
) -> None:
    customer = await people.connect(await people.account())
    conversation_id = await _open(customer)
    cases = [
        ("chat:send", "not an object", "invalid_payload"),
        (
            "chat:send",
            {"conversation_id": "nope", "client_msg_id": "x", "body": "hi"},
            "invalid_payload",
        ),
        (
            "chat:send",
            {"conversation_id": conversation_id, "client_msg_id": "x", "body": "y" * 51},
            "message_too_long",
        ),
        (
            "chat:send",
            {"conversation_id": conversation_id, "client_msg_id": "x", "body": "   "},
            "empty_message",
        ),
        (
            "chat:send",
            {"conversation_id": conversation_id, "client_msg_id": "x", "body": "a", "extra": 1},
            "invalid_payload",
        ),
        ("chat:launch_missiles", {}, "unknown_event"),
        ("subscribe", {"room": "staff"}, "unknown_room"),
        ("subscribe", {"room": "dashboard"}, "forbidden"),
        ("unsubscribe", {"room": "staff"}, "forbidden"),
        ("chat:queue", {}, "forbidden"),
        ("presence:set", {"status": "busy"}, "staff_only"),
        ("chat:assign", {"conversation_id": conversation_id, "assignee_id": None}, "forbidden"),
    ]
    for event, payload, code in cases:
        ack = await customer.call(event, payload)
        assert ack["ok"] is False, (event, payload)
        assert ack["error"]["code"] == code, (event, payload, ack)
    assert (await _send(customer, conversation_id, "still here"))["ok"] is True
    async with open_database(server.app[SETTINGS].database_url):
        assert await Message.filter(conversation_id=conversation_id).count() == 1


async def test_customers_cannot_reach_each_others_conversations(people: People) -> None:
    alice = await people.connect(await people.account())
    bob = await people.connect(await people.account())
    conversation_id = await _open(alice)
    for event, payload in (
        ("subscribe", {"room": f"conversation:{conversation_id}"}),
        ("chat:send", {"conversation_id": conversation_id, "client_msg_id": "x", "body": "hi"}),
        ("chat:history", {"conversation_id": conversation_id}),
        ("chat:read", {"conversation_id": conversation_id, "seq": 1}),
        ("chat:typing", {"conversation_id": conversation_id, "typing": True}),
    ):
        ack = await bob.call(event, payload)
        assert ack["error"]["code"] == "conversation_not_found", event
    await _send(alice, conversation_id, "private")
    await asyncio.sleep(0.05)
    assert bob.pending("chat:message") == []


async def test_history_pages_backwards(people: People) -> None:
    customer = await people.connect(await people.account())
    conversation_id = await _open(customer)
    for n in range(1, 8):
        await _send(customer, conversation_id, f"message {n}")
    newest = await customer.call("chat:history", {"conversation_id": conversation_id, "limit": 3})
    assert [m["seq"] for m in newest["messages"]] == [5, 6, 7]
    assert newest["has_more"] is True
    older = await customer.call(
        "chat:history", {"conversation_id": conversation_id, "before_seq": 5, "limit": 3}
    )
    assert [m["seq"] for m in older["messages"]] == [2, 3, 4]
    oldest = await customer.call(
        "chat:history", {"conversation_id": conversation_id, "before_seq": 2, "limit": 3}
    )
    assert [m["seq"] for m in oldest["messages"]] == [1]
    assert oldest["has_more"] is False


async def test_sync_replays_what_a_disconnected_client_missed(
    people: People, server: TestServer
) -> None:
    customer_account = await people.account()
    customer = await people.connect(customer_account)
    agent = await people.connect(await people.account(Role.EDITOR))
    conversation_id = await _open(customer)
    await agent.call("subscribe", {"room": f"conversation:{conversation_id}"})
    await _send(customer, conversation_id, "one")
    await customer.close()

    for n in range(3):
        await _send(agent, conversation_id, f"while you were away {n}")
    note = await server.app[HUB].inbox.create(
        user_id=customer_account.user_id, type="chat.new_message", title="New reply"
    )

    back = await people.connect(customer_account)
    replay = await back.call("sync", {"conversations": {conversation_id: 1}})
    assert replay["ok"] is True
    messages = replay["conversations"][conversation_id]["messages"]
    assert [m["seq"] for m in messages] == [2, 3, 4]
    assert replay["notifications"][0]["id"] == str(note.id)
    nothing_new = await back.call(
        "sync",
        {"conversations": {conversation_id: 4}, "notifications_after": str(note.id)},
    )
    assert nothing_new["conversations"][conversation_id]["messages"] == []
    assert nothing_new["notifications"] == []
    acked = await back.call("notifications:ack", {"ids": [str(note.id)]})
    assert acked == {"ok": True, "delivered": 1}

    # A conversation the client never heard of is replayed from the start.
    fresh = await back.call("sync", {})
    assert [m["seq"] for m in fresh["conversations"][conversation_id]["messages"]] == [1, 2, 3, 4]


async def test_notifications_are_pushed_to_every_tab(people: People, server: TestServer) -> None:
    account = await people.account()
    tab1 = await people.connect(account)
    tab2 = await people.connect(account)
    other = await people.connect(await people.account())
    await server.app[HUB].inbox.create(user_id=account.user_id, type="file.shared", title="Shared")
    assert (await tab1.next("notification"))["title"] == "Shared"
    assert (await tab2.next("notification"))["title"] == "Shared"
    await asyncio.sleep(0.05)
    assert other.pending("notification") == []


async def test_assignment_by_hand_and_round_robin(people: People, server: TestServer) -> None:
    customer = await people.connect(await people.account())
    first_agent_account = await people.account(Role.EDITOR)
    second_agent_account = await people.account(Role.EDITOR)
    first = await people.connect(first_agent_account)
    second = await people.connect(second_agent_account)
    one = await _open(customer, "one")
    two = await _open(customer, "two")

    by_hand = await first.call(
        "chat:assign", {"conversation_id": one, "assignee_id": str(first_agent_account.user_id)}
    )
    assert by_hand["conversation"]["assignee_id"] == str(first_agent_account.user_id)
    assigned = await first.until("chat:assigned", lambda c: c["id"] == one)
    assert assigned["assignee_id"] == str(first_agent_account.user_id)

    auto = await first.call("chat:assign", {"conversation_id": two, "assignee_id": "auto"})
    # The first agent already has one open conversation: round-robin picks the other.
    assert auto["conversation"]["assignee_id"] == str(second_agent_account.user_id)
    await second.until("chat:assigned", lambda c: c["id"] == two)

    queue = await first.call("chat:queue", {})
    assert {c["id"] for c in queue["conversations"]} == {one, two}
    history = await customer.call("chat:history", {"conversation_id": one})
    assert history["messages"][-1]["kind"] == "system"


async def test_resolved_conversation_reopens_on_a_customer_message(people: People) -> None:
    customer = await people.connect(await people.account())
    agent = await people.connect(await people.account(Role.EDITOR))
    conversation_id = await _open(customer)
    resolved = await agent.call(
        "chat:status", {"conversation_id": conversation_id, "status": "resolved"}
    )
    assert resolved["conversation"]["status"] == "resolved"
    await _send(customer, conversation_id, "one more question")
    queue = await agent.call("chat:queue", {})
    assert [c["status"] for c in queue["conversations"] if c["id"] == conversation_id] == ["open"]


async def test_presence_reaches_staff_and_goes_offline_after_the_grace(people: People) -> None:
    agent = await people.connect(await people.account(Role.EDITOR))
    customer_account = await people.account()
    customer = await people.connect(customer_account)
    online = await agent.until("presence", lambda p: p["user_id"] == str(customer_account.user_id))
    assert online["online"] is True
    await customer.close()
    offline = await agent.until(
        "presence", lambda p: p["user_id"] == str(customer_account.user_id), timeout=5
    )
    assert offline == {
        "user_id": str(customer_account.user_id),
        "online": False,
        "status": "offline",
        "activity": "active",
    }


async def test_a_quick_reconnect_does_not_flap_presence(
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    clients: list[HubClient],
) -> None:
    settings = make_settings(database_url=migrated_database_url, presence_grace_seconds=1.0)
    server = await aiohttp_server(create_app(settings))
    people = People(server, clients)
    agent = await people.connect(await people.account(Role.EDITOR))
    account = await people.account()
    first = await people.connect(account)
    await agent.until("presence", lambda p: p["user_id"] == str(account.user_id))
    await first.close()
    await people.connect(account)  # a page reload
    await asyncio.sleep(1.3)
    assert [p for p in agent.pending("presence") if p["user_id"] == str(account.user_id)] == []


async def test_staff_status_and_activity(people: People) -> None:
    watcher = await people.connect(await people.account(Role.ADMIN))
    agent_account = await people.account(Role.EDITOR)
    agent = await people.connect(agent_account)
    ack = await agent.call("presence:set", {"status": "busy", "activity": "idle"})
    assert ack["presence"]["status"] == "busy"
    seen = await watcher.until(
        "presence",
        lambda p: p["user_id"] == str(agent_account.user_id) and p["status"] == "busy",
    )
    assert seen["activity"] == "idle"


async def test_dashboard_events_follow_permissions(people: People, server: TestServer) -> None:
    admin = await people.connect(await people.account(Role.ADMIN))
    editor = await people.connect(await people.account(Role.EDITOR))
    assert (await admin.call("subscribe", {"room": "dashboard"}))["ok"] is True
    subscribed = await editor.call("subscribe", {"room": "dashboard"})
    assert "security.event" not in subscribed["types"]
    bus = server.app[HUB].bus
    await bus.emit("security.event", {"kind": "login_failed"})
    await bus.emit("form.submitted", {"form": "contact"})
    assert (await admin.next("dashboard:event"))["type"] == "security.event"
    assert (await admin.next("dashboard:event"))["type"] == "form.submitted"
    assert (await editor.next("dashboard:event"))["type"] == "form.submitted"
    await asyncio.sleep(0.05)
    assert editor.pending("dashboard:event") == []

    follow = await admin.call("dashboard:follow", {"types": ["form.submitted"]})
    assert follow["types"] == ["form.submitted"]
    await bus.emit("security.event", {"kind": "login_failed"})
    await bus.emit("form.submitted", {"form": "quote"})
    only = await admin.next("dashboard:event")
    assert only["event"]["data"] == {"form": "quote"}
    unknown = await admin.call("dashboard:follow", {"types": ["nope.nothing"]})
    assert unknown["error"]["code"] == "unknown_event_type"


async def test_polling_transport_works_too(people: People) -> None:
    account = await people.account()
    client = HubClient()
    people.clients.append(client)
    await client.connect(str(people.server.make_url("/")), account.token, transport="polling")
    conversation_id = await _open(client)
    assert (await _send(client, conversation_id, "over long-polling"))["message"]["seq"] == 1


async def test_rows_are_written_before_anyone_is_told(people: People, server: TestServer) -> None:
    customer = await people.connect(await people.account())
    conversation_id = await _open(customer)
    await _send(customer, conversation_id, "durable")
    async with open_database(server.app[SETTINGS].database_url):
        conversation = await Conversation.get(id=conversation_id)
        assert conversation.last_seq == 1
        assert [m.body for m in await Message.filter(conversation_id=conversation_id)] == [
            "durable"
        ]


async def test_staff_get_a_snapshot_of_who_is_online(people: People) -> None:
    customer_account = await people.account()
    await people.connect(customer_account)
    agent_account = await people.account(Role.EDITOR)
    agent = await people.connect(agent_account)
    await agent.call("presence:set", {"status": "away"})

    ack = await agent.call("presence:list", {})

    assert ack["ok"] is True
    by_id = {u["user_id"]: u for u in ack["users"]}
    assert by_id[str(customer_account.user_id)]["role"] == "customer"
    assert by_id[str(customer_account.user_id)]["online"] is True
    assert by_id[str(agent_account.user_id)]["status"] == "away"
    customer = await people.connect(await people.account())
    refused = await customer.call("presence:list", {})
    assert refused["error"]["code"] == "staff_only"
