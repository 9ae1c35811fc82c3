"""A customer who is offline when staff answer gets a web push they can decrypt; one who is
online gets the socket event instead. Real app, real database, a loopback push service."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import KEYS
from core.permissions import Role
from core.settings import Settings
from db.connection import open_database
from db.models.push import DeliveryAttempt, DeliveryStatus
from tests.fakes.push_service import FakePushService
from tests.identity import SignedIn, sign_in
from tests.sockets import HubClient

Client = TestClient[Any, Any]


async def _push_service(client: Client, aiohttp_server: Any) -> FakePushService:
    key = (await (await client.get("/api/v1/push/vapid-public-key")).json())["public_key"]
    fake = FakePushService(expected_key=key)
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.attach(str(server.make_url("/")))
    return fake


Parties = tuple[SignedIn, SignedIn, FakePushService]


@pytest.fixture
async def parties(client: Client, settings: Settings, aiohttp_server: Any) -> Parties:
    """A customer whose browser is subscribed to web push, an agent, the push service."""
    assert client.app is not None
    keys = client.app[KEYS]
    customer = await sign_in(settings.database_url, keys)
    agent = await sign_in(settings.database_url, keys, role=Role.EDITOR)
    fake = await _push_service(client, aiohttp_server)
    subscribed = await client.post(
        "/api/v1/push/subscriptions", json=fake.subscribe().json(), headers=customer.headers
    )
    assert subscribed.status == 201
    return customer, agent, fake


async def test_offline_customer_gets_a_web_push_for_a_staff_reply(
    client: Client, parties: Parties
) -> None:
    customer, agent, fake = parties

    opened = await (
        await client.post(
            "/api/v1/conversations", json={"subject": "Quote"}, headers=customer.headers
        )
    ).json()
    conversation_id = opened["conversation"]["id"]
    await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"client_msg_id": "r1", "body": "Your quote is ready."},
        headers=agent.headers,
    )

    [push] = await fake.wait_for(1)
    assert fake.violations == []
    payload = json.loads(push.plaintext)
    assert payload["title"] == "New message"
    assert payload["body"] == "Your quote is ready."
    assert payload["link"] == f"/chat/{conversation_id}"
    assert push.headers["Urgency"] == "high"
    assert push.headers["Topic"].startswith("conv-")


async def test_an_online_customer_is_not_pushed(client: Client, parties: Parties) -> None:
    customer, agent, fake = parties
    socket = HubClient()
    try:
        await socket.connect(str(client.make_url("/")), customer.token)
        opened = await socket.call("chat:open", {"subject": "live"})
        conversation_id = opened["conversation"]["id"]
        await client.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": "r1", "body": "Live answer"},
            headers=agent.headers,
        )
        assert (await socket.next("chat:message"))["body"] == "Live answer"
    finally:
        await socket.close()
    assert fake.received == []


async def test_reading_the_notification_cancels_a_pending_push_retry(
    client: Client, settings: Settings, parties: Parties
) -> None:
    customer, agent, fake = parties
    fake.answer(429, retry_after="1")  # the first try is asked to come back in a second
    opened = await (
        await client.post("/api/v1/conversations", json={}, headers=customer.headers)
    ).json()
    await client.post(
        f"/api/v1/conversations/{opened['conversation']['id']}/messages",
        json={"client_msg_id": "r1", "body": "Answer"},
        headers=agent.headers,
    )
    async with open_database(settings.database_url):
        attempt = await _wait_for_attempt(DeliveryStatus.PENDING)
    read = await client.post(
        f"/api/v1/notifications/{attempt.notification_id}/read", headers=customer.headers
    )
    assert read.status == 200
    async with open_database(settings.database_url):
        cancelled = await _wait_for_attempt(DeliveryStatus.CANCELLED)
    assert cancelled.id == attempt.id
    await asyncio.sleep(1.5)  # past the retry's due time: nothing more may be sent
    assert len(fake.requests) == 1
    assert fake.received == []


async def _wait_for_attempt(status: DeliveryStatus) -> DeliveryAttempt:
    """The push and the cancel run in the app's background; look until the row says so."""
    for _ in range(200):
        row = await DeliveryAttempt.filter(status=status).first()
        if row is not None and (status is not DeliveryStatus.PENDING or row.attempts >= 1):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"no delivery attempt became {status}")
