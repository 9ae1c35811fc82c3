"""`GET/PUT /api/v1/notification-preferences`, the in-app channel, and the live unread count
on the socket (`notifications:unread {count}`)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import BUS, HUB, KEYS
from core.settings import Settings
from db.connection import open_database
from db.models.email import NotificationPreference
from tests.identity import SignedIn, sign_in
from tests.sockets import HubClient

Client = TestClient[Any, Any]
URL = "/api/v1/notification-preferences"


@pytest.fixture
async def customer(client: Client, settings: Settings) -> SignedIn:
    assert client.app is not None
    return await sign_in(settings.database_url, client.app[KEYS])


async def test_defaults_per_type_before_anything_is_chosen(
    client: Client, customer: SignedIn
) -> None:
    answer = await client.get(URL, headers=customer.headers)

    assert answer.status == 200
    body = await answer.json()
    assert body["quiet_hours"] is None
    assert (body["timezone"], body["digest_minutes"], body["locale"]) == ("UTC", 0, "en")
    types = {t["type"]: t for t in body["types"]}
    assert types["chat.new_message"]["channels"] == {
        "in_app": True,
        "web_push": True,
        "email": True,
    }
    assert types["security.event"]["channels"] == {
        "in_app": True,
        "web_push": True,
        "email": False,
    }
    assert all(t["channels"] == t["defaults"] for t in body["types"])


async def test_put_replaces_the_document_and_stores_only_what_differs(
    client: Client, customer: SignedIn, settings: Settings
) -> None:
    document = {
        "channels": {
            "render.completed": {"web_push": False, "email": True},
            "security.event": {"email": True},
        },
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "timezone": "Europe/Berlin",
        "digest_minutes": 60,
        "locale": "de",
    }

    answer = await client.put(URL, json=document, headers=customer.headers)

    assert answer.status == 200
    body = await answer.json()
    types = {t["type"]: t["channels"] for t in body["types"]}
    assert types["render.completed"] == {"in_app": True, "web_push": False, "email": True}
    assert types["security.event"] == {"in_app": True, "web_push": True, "email": True}
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert (body["timezone"], body["digest_minutes"], body["locale"]) == (
        "Europe/Berlin",
        60,
        "de",
    )
    async with open_database(settings.database_url):
        row = await NotificationPreference.get(user_id=customer.user_id)
    assert row.channels == {
        "render.completed": {"web_push": False},
        "security.event": {"email": True},
    }

    # PUT replaces: what is left out goes back to its default.
    reset = await (await client.put(URL, json={}, headers=customer.headers)).json()
    assert reset["quiet_hours"] is None
    assert all(t["channels"] == t["defaults"] for t in reset["types"])


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"channels": {"nope.type": {"email": False}}}, "unknown_notification_type"),
        ({"channels": {"chat.new_message": {"sms": True}}}, "unknown_channel"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "invalid_quiet_hours"),
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"locale": "fr"}, "unsupported_locale"),
        ({"digest_minutes": -1}, "validation_failed"),
    ],
)
async def test_a_bad_document_is_refused_and_nothing_is_written(
    client: Client, customer: SignedIn, settings: Settings, document: dict[str, Any], code: str
) -> None:
    answer = await client.put(URL, json=document, headers=customer.headers)

    assert answer.status == 422
    assert (await answer.json())["error"]["code"] == code
    async with open_database(settings.database_url):
        assert await NotificationPreference.all().count() == 0


async def test_preferences_need_a_signed_in_user(client: Client) -> None:
    assert (await client.get(URL)).status == 401
    assert (await client.put(URL, json={})).status == 401


async def _socket(client: Client, who: SignedIn) -> HubClient:
    socket = HubClient()
    socket.sio.on("notifications:unread", socket._collector("notifications:unread"))
    await socket.connect(str(client.make_url("/")), who.token)
    return socket


async def test_the_unread_count_follows_creates_reads_and_acks(
    client: Client, customer: SignedIn
) -> None:
    assert client.app is not None
    inbox = client.app[HUB].inbox
    socket = await _socket(client, customer)
    try:
        first = await inbox.create(user_id=customer.user_id, type="render.completed", title="A")
        assert await socket.next("notifications:unread") == {"count": 1}
        assert (await socket.next("notification"))["id"] == str(first.id)
        await inbox.create(user_id=customer.user_id, type="render.completed", title="B")
        assert await socket.next("notifications:unread") == {"count": 2}

        read = await client.post(f"/api/v1/notifications/{first.id}/read", headers=customer.headers)
        assert read.status == 200
        assert await socket.next("notifications:unread") == {"count": 1}

        acked = await socket.call("notifications:ack", {"ids": [str(first.id)]})
        assert acked == {"ok": True, "delivered": 1}
        assert await socket.next("notifications:unread") == {"count": 1}
    finally:
        await socket.close()


async def test_in_app_switched_off_stores_but_does_not_announce(
    client: Client, customer: SignedIn
) -> None:
    put = await client.put(
        URL,
        json={"channels": {"render.completed": {"in_app": False}}},
        headers=customer.headers,
    )
    assert put.status == 200
    assert client.app is not None
    socket = await _socket(client, customer)
    try:
        await client.app[HUB].inbox.create(
            user_id=customer.user_id, type="render.completed", title="quiet"
        )
        assert await socket.next("notifications:unread") == {"count": 1}
        for subscription in list(client.app[BUS]._subscriptions):
            await subscription.drain()  # every relay has run ...
        await socket.call("notifications:ack", {"ids": []})  # ... and its emits are here
        assert socket.pending("notification") == []
        listed = await (await client.get("/api/v1/notifications", headers=customer.headers)).json()
        assert [n["title"] for n in listed["items"]] == ["quiet"]
    finally:
        await socket.close()
