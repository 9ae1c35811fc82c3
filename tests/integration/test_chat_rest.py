"""Support chat over REST, and what reaches sockets and inboxes from it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import HUB, KEYS
from core.permissions import Role
from core.settings import Settings
from db.connection import open_database
from db.models.chat import Notification
from tests.identity import sign_in
from tests.sockets import HubClient

Client = TestClient[Any, Any]


async def test_open_send_page_over_rest(client: Client, settings: Settings) -> None:
    assert client.app is not None
    customer = await sign_in(settings.database_url, client.app[KEYS])
    opened = await client.post(
        "/api/v1/conversations",
        json={"subject": "Bracket", "body": "First question", "client_msg_id": "c1"},
        headers=customer.headers,
    )
    assert opened.status == 201
    body = await opened.json()
    conversation_id = body["conversation"]["id"]
    assert body["message"]["seq"] == 1
    url = f"/api/v1/conversations/{conversation_id}/messages"
    second = await client.post(
        url, json={"client_msg_id": "c2", "body": "Second"}, headers=customer.headers
    )
    assert (second.status, (await second.json())["message"]["seq"]) == (201, 2)
    again = await client.post(
        url, json={"client_msg_id": "c2", "body": "Second"}, headers=customer.headers
    )
    assert (again.status, (await again.json())["duplicate"]) == (200, True)
    page = await (await client.get(f"{url}?limit=1", headers=customer.headers)).json()
    assert [m["seq"] for m in page["items"]] == [2]
    assert page["has_more"] is True
    mine = await (await client.get("/api/v1/conversations", headers=customer.headers)).json()
    assert [c["id"] for c in mine["items"]] == [conversation_id]

    stranger = await sign_in(settings.database_url, client.app[KEYS])
    probe = await client.get(url, headers=stranger.headers)
    assert (probe.status, (await probe.json())["error"]["code"]) == (404, "conversation_not_found")
    too_long = await client.post(
        url, json={"client_msg_id": "c3", "body": "x" * 20_000}, headers=customer.headers
    )
    assert (await too_long.json())["error"]["code"] == "message_too_long"


async def test_staff_queue_and_canned_replies(client: Client, settings: Settings) -> None:
    assert client.app is not None
    keys = client.app[KEYS]
    customer = await sign_in(settings.database_url, keys)
    agent = await sign_in(settings.database_url, keys, role=Role.EDITOR)
    await client.post(
        "/api/v1/conversations", json={"subject": "waiting"}, headers=customer.headers
    )
    queue = await (await client.get("/api/v1/conversations/queue", headers=agent.headers)).json()
    assert [c["subject"] for c in queue["items"]] == ["waiting"]
    created = await client.post(
        "/api/v1/canned-replies",
        json={"shortcut": "thanks", "title": "Thanks", "body": "Thanks, we are on it."},
        headers=agent.headers,
    )
    assert created.status == 201
    dup = await client.post(
        "/api/v1/canned-replies",
        json={"shortcut": "thanks", "title": "Again", "body": "x"},
        headers=agent.headers,
    )
    assert (await dup.json())["error"]["code"] == "shortcut_taken"
    found = await (await client.get("/api/v1/canned-replies?q=than", headers=agent.headers)).json()
    assert [r["shortcut"] for r in found["items"]] == ["thanks"]
    denied = await client.get("/api/v1/canned-replies", headers=customer.headers)
    assert denied.status == 403


async def test_an_offline_recipient_gets_an_inbox_notification(
    client: Client, settings: Settings
) -> None:
    assert client.app is not None
    keys = client.app[KEYS]
    customer = await sign_in(settings.database_url, keys)
    agent = await sign_in(settings.database_url, keys, role=Role.EDITOR)
    opened = await (
        await client.post("/api/v1/conversations", json={"subject": "s"}, headers=customer.headers)
    ).json()
    conversation_id = opened["conversation"]["id"]
    url = f"/api/v1/conversations/{conversation_id}/messages"
    await client.post(
        url, json={"client_msg_id": "a1", "body": "We can do it."}, headers=agent.headers
    )
    async with open_database(settings.database_url):
        notes = await Notification.filter(user_id=customer.user_id)
    assert [(n.type, n.body, n.link) for n in notes] == [
        ("chat.new_message", "We can do it.", f"/chat/{conversation_id}")
    ]

    # Online, the customer hears it on the socket instead: no inbox entry.
    socket = HubClient()
    try:
        await socket.connect(str(client.make_url("/")), customer.token)
        await client.post(
            url, json={"client_msg_id": "a2", "body": "Online now"}, headers=agent.headers
        )
        assert (await socket.next("chat:message"))["body"] == "Online now"
    finally:
        await socket.close()
    async with open_database(settings.database_url):
        assert await Notification.filter(user_id=customer.user_id).count() == 1


async def test_a_client_that_stops_reading_does_not_slow_the_others(
    client: Client, settings: Settings
) -> None:
    """A raw websocket that completes the handshake and then never reads again."""
    assert client.app is not None
    keys = client.app[KEYS]
    stuck_account = await sign_in(settings.database_url, keys)
    reader_account = await sign_in(settings.database_url, keys)
    ws = await client.ws_connect("/socket.io/?EIO=4&transport=websocket")
    await ws.receive()  # engine.io open
    await ws.send_str("40" + json.dumps({"token": stuck_account.token}))
    await ws.receive()  # socket.io connect
    reader = HubClient()
    try:
        await reader.connect(str(client.make_url("/")), reader_account.token)
        hub = client.app[HUB]
        for user_id in (stuck_account.user_id, reader_account.user_id):
            room = f"user:{user_id}"
            for sid, _ in list(hub.sio.manager.get_participants("/", room)):
                await hub.sio.enter_room(sid, "everyone")
        assert len(list(hub.sio.manager.get_participants("/", "everyone"))) == 2
        payload = "x" * 100_000
        started = asyncio.get_running_loop().time()
        for n in range(300):  # 30 MB: far more than the stuck socket's buffers hold
            await hub.sio.emit("notification", {"n": n, "pad": payload}, room="everyone")
        got = [await reader.next("notification", timeout=20) for _ in range(300)]
        elapsed = asyncio.get_running_loop().time() - started
        assert [g["n"] for g in got] == list(range(300))
        assert elapsed < 20
    finally:
        await reader.close()
        await ws.close()
