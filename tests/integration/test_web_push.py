"""Web push against a protocol-faithful push service on 127.0.0.1: VAPID, aes128gcm, headers,
gone subscriptions, retries and their backoff, the size limit; the REST registration and the
inbox REST (list, read, read-all) with `notification.read` on the bus."""

from __future__ import annotations

import base64
import json
import logging
import stat
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec

from api.app import create_app
from api.keys import BUS, KEYS, PUSH
from core.bus import Event
from core.settings import Settings
from core.tokens import KeyRing, signing_key
from db.connection import open_database
from db.models.chat import Notification
from db.models.push import DeliveryAttempt, DeliveryStatus, PushSubscription
from hub.notify import NotificationView
from hub.push import (
    KEY_FILE,
    AsyncioRetryScheduler,
    RetryPolicy,
    VapidKeys,
    WebPushSender,
    conversation_topic,
    register_subscription,
)
from tests.conftest import SettingsFactory
from tests.fakes.push_service import BrowserSubscription, FakePushService, b64url_decode
from tests.identity import SignedIn, sign_in

Client = TestClient[Any, Any]
SUBJECT = "mailto:ops@example.com"


def _keys() -> KeyRing:
    return KeyRing(current=signing_key("only-signs-tokens-no-app-reads-here-" + "k" * 8))


@pytest.fixture
def vapid() -> VapidKeys:
    return VapidKeys(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
async def push_service(aiohttp_server: Any, vapid: VapidKeys) -> FakePushService:
    fake = FakePushService(expected_key=vapid.application_server_key)
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.attach(str(server.make_url("/")))
    return fake


@pytest.fixture
async def sender(vapid: VapidKeys) -> AsyncIterator[WebPushSender]:
    policy = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2)
    sender = WebPushSender(keys=vapid, subject=SUBJECT, policy=policy)
    yield sender
    await sender.close()


async def _subscribed(user_id: UUID, browser: BrowserSubscription) -> None:
    await register_subscription(
        user_id=user_id, endpoint=browser.endpoint, p256dh=browser.p256dh, auth=browser.auth
    )


async def _notification(user_id: UUID, **values: Any) -> NotificationView:
    values.setdefault("type", "chat.new_message")
    values.setdefault("title", "New message")
    values.setdefault("data", {"conversation_id": str(uuid.uuid4()), "seq": 1})
    return NotificationView.of(await Notification.create(user_id=user_id, **values))


async def _idle(sender: WebPushSender) -> None:
    assert isinstance(sender.scheduler, AsyncioRetryScheduler)
    await sender.scheduler.idle()


async def test_a_push_arrives_encrypted_signed_and_with_its_headers(
    migrated_database_url: str, push_service: FakePushService, sender: WebPushSender
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    browser = push_service.subscribe()
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, browser)
        view = await _notification(user.user_id, body="Your quote is ready")
        outcomes = await sender.send_to_user(user.user_id, view)
        attempt = await DeliveryAttempt.get(id=outcomes[0].attempt_id)
        subscription = await PushSubscription.get(endpoint=browser.endpoint)

    assert [(o.status, o.attempts, o.error) for o in outcomes] == [(DeliveryStatus.SENT, 1, "")]
    assert push_service.violations == []
    [received] = push_service.received
    assert json.loads(received.plaintext) == view.wire()
    assert received.headers["Urgency"] == "high"
    assert received.headers["TTL"] == "86400"
    topic = conversation_topic(view.data["conversation_id"])
    assert received.headers["Topic"] == topic
    assert len(topic) <= 32
    assert topic.startswith("conv-")
    assert received.claims["sub"] == SUBJECT
    assert received.claims["aud"] == push_service.base_url
    assert (attempt.status, attempt.attempts, attempt.channel) == (
        DeliveryStatus.SENT,
        1,
        "web_push",
    )
    assert attempt.notification_id == view.id  # type: ignore[attr-defined]
    assert subscription.last_success_at is not None
    assert subscription.failure_count == 0


async def test_pushes_of_one_conversation_share_a_topic_and_others_do_not(
    migrated_database_url: str, push_service: FakePushService, sender: WebPushSender
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, push_service.subscribe())
        same = {"conversation_id": "c-1", "seq": 1}
        for data in (same, {**same, "seq": 2}, {"conversation_id": "c-2", "seq": 1}):
            await sender.send_to_user(user.user_id, await _notification(user.user_id, data=data))
        await sender.send_to_user(
            user.user_id, await _notification(user.user_id, type="order.paid", data={})
        )
    topics = [r.headers.get("Topic") for r in push_service.received]
    assert topics[0] == topics[1] != topics[2]
    assert topics[3] is None
    assert [r.headers["Urgency"] for r in push_service.received] == ["high"] * 3 + ["low"]


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_deleted(
    status: int,
    migrated_database_url: str,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    keep, lose = push_service.subscribe(), push_service.subscribe()
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, keep)
        await _subscribed(user.user_id, lose)
        push_service.forget(lose, status=status)
        outcomes = await sender.send_to_user(user.user_id, await _notification(user.user_id))
        left = [s.endpoint for s in await PushSubscription.filter(user_id=user.user_id)]
        attempts = {a.status for a in await DeliveryAttempt.all()}

    by_status = {o.status: o for o in outcomes}
    assert set(by_status) == {DeliveryStatus.SENT, DeliveryStatus.GONE}
    assert by_status[DeliveryStatus.GONE].error == f"http_{status}"
    assert left == [keep.endpoint]
    assert attempts == {DeliveryStatus.SENT, DeliveryStatus.GONE}


async def test_429_is_retried_after_retry_after_and_then_sent(
    migrated_database_url: str, push_service: FakePushService, sender: WebPushSender
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, push_service.subscribe())
        push_service.answer(429, retry_after="1")
        view = await _notification(user.user_id)
        [first] = await sender.send_to_user(user.user_id, view)
        pending = await DeliveryAttempt.get(id=first.attempt_id)
        await _idle(sender)
        attempt = await DeliveryAttempt.get(id=first.attempt_id)

    assert (first.status, first.attempts, first.error) == (DeliveryStatus.PENDING, 1, "http_429")
    assert pending.next_attempt_at is not None
    assert (attempt.status, attempt.attempts, attempt.next_attempt_at) == (
        DeliveryStatus.SENT,
        2,
        None,
    )
    assert len(push_service.requests) == 2
    waited = push_service.requests[1] - push_service.requests[0]
    assert 1.0 <= waited < 2.0  # Retry-After (1 s) beat the 0.05 s backoff
    assert [json.loads(p) for p in push_service.plaintexts()] == [view.wire()]


async def test_5xx_backs_off_exponentially_until_dead(
    migrated_database_url: str, push_service: FakePushService, sender: WebPushSender
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    browser = push_service.subscribe()
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, browser)
        push_service.answer(500, times=10)
        [first] = await sender.send_to_user(user.user_id, await _notification(user.user_id))
        await _idle(sender)
        attempt = await DeliveryAttempt.get(id=first.attempt_id)
        subscription = await PushSubscription.get(endpoint=browser.endpoint)

    assert (attempt.status, attempt.attempts, attempt.last_error) == (
        DeliveryStatus.DEAD,
        3,
        "http_500",
    )
    assert subscription.failure_count == 3  # still there: 5xx says nothing about it
    gaps = [b - a for a, b in zip(push_service.requests, push_service.requests[1:], strict=False)]
    assert len(gaps) == 2
    assert 0.025 <= gaps[0] < 0.5  # 0.05 s with 50-100% jitter, plus scheduling
    assert 0.05 <= gaps[1] < 0.6  # doubled
    assert push_service.received == []


async def test_an_oversize_payload_is_refused_before_any_request(
    migrated_database_url: str, push_service: FakePushService, sender: WebPushSender
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, push_service.subscribe())
        view = await _notification(user.user_id, body="x" * 4000)
        outcomes = await sender.send_to_user(user.user_id, view)
        attempt = await DeliveryAttempt.get(id=outcomes[0].attempt_id)
        fitting = await _notification(user.user_id, body="é" * 1700)  # 3,400 bytes in UTF-8
        fits = await sender.send_to_user(user.user_id, fitting)

    assert [(o.status, o.error, o.attempts) for o in outcomes] == [
        (DeliveryStatus.FAILED, "payload_too_large", 0)
    ]
    assert (attempt.status, attempt.last_error) == (DeliveryStatus.FAILED, "payload_too_large")
    assert [o.status for o in fits] == [DeliveryStatus.SENT]
    assert len(push_service.requests) == 1
    assert json.loads(push_service.received[0].plaintext)["body"] == "é" * 1700


async def test_pending_retries_are_resumed_once_by_a_new_process(
    migrated_database_url: str, push_service: FakePushService, vapid: VapidKeys
) -> None:
    user = await sign_in(migrated_database_url, _keys())
    policy = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1)
    async with open_database(migrated_database_url):
        await _subscribed(user.user_id, push_service.subscribe())
        first = WebPushSender(keys=vapid, subject=SUBJECT, policy=policy)
        push_service.answer(503)
        [outcome] = await first.send_to_user(user.user_id, await _notification(user.user_id))
        await first.close()  # stopped before its retry ran
        second = WebPushSender(keys=vapid, subject=SUBJECT, policy=policy)
        third = WebPushSender(keys=vapid, subject=SUBJECT, policy=policy)
        assert await second.resume_pending() == 1
        assert await third.resume_pending() == 1
        await _idle(second)
        await _idle(third)
        await second.close()
        await third.close()
        attempt = await DeliveryAttempt.get(id=outcome.attempt_id)

    assert (attempt.status, attempt.attempts) == (DeliveryStatus.SENT, 2)
    assert len(push_service.received) == 1  # two processes resumed it, one sent it


# -- through the app: REST registration, the public key, a push to a registered browser ---------


async def test_vapid_public_key_is_public_and_a_p256_point(client: Client) -> None:
    assert client.app is not None
    response = await client.get("/api/v1/push/vapid-public-key")
    key = (await response.json())["public_key"]
    assert response.status == 200
    assert key == client.app[PUSH].application_server_key
    point = b64url_decode(key)
    assert (len(point), point[0]) == (65, 4)


async def test_register_push_and_unregister_over_rest(
    client: Client, settings: Settings, push_service: FakePushService
) -> None:
    assert client.app is not None
    alice = await sign_in(settings.database_url, client.app[KEYS])
    bob = await sign_in(settings.database_url, client.app[KEYS])
    push_service.expected_key = client.app[PUSH].application_server_key
    browser = push_service.subscribe()
    url = "/api/v1/push/subscriptions"

    created = await client.post(url, json=browser.json(), headers=alice.headers)
    again = await client.post(url, json=browser.json(), headers=alice.headers)
    assert (created.status, again.status) == (201, 200)
    assert (await created.json())["id"] == (await again.json())["id"]

    async with open_database(settings.database_url):
        view = await _notification(alice.user_id, body="hello")
        [outcome] = await client.app[PUSH].send_to_user(alice.user_id, view)
    assert outcome.status is DeliveryStatus.SENT
    assert json.loads(push_service.received[0].plaintext)["body"] == "hello"

    # The same browser profile now signed in as Bob: the endpoint moves to him.
    moved = await client.post(url, json=browser.json(), headers=bob.headers)
    assert moved.status == 200
    stolen = await client.request(
        "DELETE", url, json={"endpoint": browser.endpoint}, headers=alice.headers
    )
    assert (stolen.status, (await stolen.json())["error"]["code"]) == (
        404,
        "push_subscription_not_found",
    )
    async with open_database(settings.database_url):
        row = await PushSubscription.get(endpoint=browser.endpoint)
        assert row.user_id == bob.user_id  # type: ignore[attr-defined]
    removed = await client.request(
        "DELETE", url, json={"endpoint": browser.endpoint}, headers=bob.headers
    )
    assert removed.status == 204
    async with open_database(settings.database_url):
        assert await PushSubscription.all().count() == 0


def _off_curve(p256dh: str) -> str:
    """The same point with its y coordinate nudged: 65 bytes, but not on the curve."""
    raw = bytearray(base64.urlsafe_b64decode(p256dh + "=" * (-len(p256dh) % 4)))
    raw[-1] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _bad_subscriptions(good: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    keys = good["keys"]
    return [
        ({**good, "endpoint": "http://push.example.com/x"}, "invalid_push_endpoint"),
        ({**good, "endpoint": "https://10.0.0.5/push/x"}, "invalid_push_endpoint"),
        ({**good, "endpoint": "https://169.254.169.254/latest"}, "invalid_push_endpoint"),
        ({**good, "endpoint": "ftp://127.0.0.1/x"}, "invalid_push_endpoint"),
        ({**good, "endpoint": "https://user:pw@push.example.com/x"}, "invalid_push_endpoint"),
        ({**good, "endpoint": "not a url"}, "invalid_push_endpoint"),
        ({**good, "keys": {**keys, "p256dh": "AAAA"}}, "invalid_push_keys"),
        ({**good, "keys": {**keys, "p256dh": _off_curve(keys["p256dh"])}}, "invalid_push_keys"),
        ({**good, "keys": {**keys, "auth": "c2hvcnQ"}}, "invalid_push_keys"),
        ({**good, "keys": {**keys, "auth": "!!!!"}}, "invalid_push_keys"),
        ({"endpoint": good["endpoint"]}, "validation_failed"),
        ({**good, "keys": {"p256dh": keys["p256dh"]}}, "validation_failed"),
    ]


async def test_bad_subscriptions_are_refused_with_stable_codes_and_nothing_written(
    client: Client, settings: Settings, push_service: FakePushService
) -> None:
    assert client.app is not None
    user = await sign_in(settings.database_url, client.app[KEYS])
    good = push_service.subscribe().json()
    for body, code in _bad_subscriptions(good):
        response = await client.post("/api/v1/push/subscriptions", json=body, headers=user.headers)
        answer = await response.json()
        assert (response.status, answer["error"]["code"]) == (422, code), body
    anonymous = await client.post("/api/v1/push/subscriptions", json=good)
    assert anonymous.status == 401
    async with open_database(settings.database_url):
        assert await PushSubscription.all().count() == 0
    https_host = {**good, "endpoint": "https://fcm.googleapis.com/fcm/send/abc"}
    accepted = await client.post(
        "/api/v1/push/subscriptions", json=https_host, headers=user.headers
    )
    assert accepted.status == 201


# -- the inbox over REST --------------------------------------------------------------------------


async def _inbox(settings: Settings, user: SignedIn, count: int) -> list[UUID]:
    async with open_database(settings.database_url):
        return [(await _notification(user.user_id, title=f"n{n}")).id for n in range(count)]


async def test_inbox_lists_only_your_own_notifications_in_pages(
    client: Client, settings: Settings
) -> None:
    assert client.app is not None
    alice = await sign_in(settings.database_url, client.app[KEYS])
    bob = await sign_in(settings.database_url, client.app[KEYS])
    ids = await _inbox(settings, alice, 3)
    await _inbox(settings, bob, 2)

    page = await (await client.get("/api/v1/notifications?limit=2", headers=alice.headers)).json()
    assert [n["id"] for n in page["items"]] == [str(i) for i in ids[:2]]
    assert (page["has_more"], page["next_after"]) == (True, str(ids[1]))
    rest = await (
        await client.get(f"/api/v1/notifications?after={ids[1]}", headers=alice.headers)
    ).json()
    assert [n["id"] for n in rest["items"]] == [str(ids[2])]
    assert (rest["has_more"], rest["next_after"]) == (False, None)
    bad = await client.get("/api/v1/notifications?limit=0", headers=alice.headers)
    assert (await bad.json())["error"]["code"] == "validation_failed"


async def test_read_and_read_all_announce_on_the_bus_and_guard_ownership(
    client: Client, settings: Settings
) -> None:
    assert client.app is not None
    alice = await sign_in(settings.database_url, client.app[KEYS])
    bob = await sign_in(settings.database_url, client.app[KEYS])
    ids = await _inbox(settings, alice, 3)
    heard: list[Event] = []

    async def hear(event: Event) -> None:
        heard.append(event)

    subscription = await client.app[BUS].subscribe("notification.read", hear)

    probe = await client.post(f"/api/v1/notifications/{ids[0]}/read", headers=bob.headers)
    assert (probe.status, (await probe.json())["error"]["code"]) == (404, "notification_not_found")
    bob_all = await (
        await client.post("/api/v1/notifications/read-all", headers=bob.headers)
    ).json()
    assert bob_all["ids"] == []

    one = await client.post(f"/api/v1/notifications/{ids[0]}/read", headers=alice.headers)
    assert (one.status, (await one.json())["read"]) == (200, True)
    twice = await client.post(f"/api/v1/notifications/{ids[0]}/read", headers=alice.headers)
    assert twice.status == 200
    unread = await (
        await client.get("/api/v1/notifications?unread=true", headers=alice.headers)
    ).json()
    assert [n["id"] for n in unread["items"]] == [str(i) for i in ids[1:]]

    everything = await client.post("/api/v1/notifications/read-all", headers=alice.headers)
    assert (await everything.json())["ids"] == [str(i) for i in ids[1:]]
    await subscription.drain()
    await subscription.close()

    assert [(e.data["user_id"], e.data["ids"]) for e in heard] == [
        (str(alice.user_id), [str(ids[0])]),
        (str(alice.user_id), [str(i) for i in ids[1:]]),
    ]
    async with open_database(settings.database_url):
        assert await Notification.filter(user_id=alice.user_id, read_at__isnull=True).count() == 0
        assert await Notification.filter(user_id=bob.user_id).count() == 0
    garbage = await client.post("/api/v1/notifications/not-a-uuid/read", headers=alice.headers)
    assert garbage.status == 404


async def test_the_app_generates_its_vapid_key_once_and_never_logs_it(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(database_url=migrated_database_url)
    keys = []
    for _ in range(2):  # a start, then a restart
        app_client = await aiohttp_client(create_app(settings))
        response = await app_client.get("/api/v1/push/vapid-public-key")
        keys.append((await response.json())["public_key"])
        await app_client.close()
    path = settings.data_dir / KEY_FILE
    pem = path.read_text()
    assert keys[0] == keys[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert caplog.text.count("push.vapid_key_generated") == 1
    secret = "".join(pem.strip().splitlines()[1:-1])
    for line in pem.strip().splitlines()[1:-1]:
        assert line not in caplog.text
    assert secret not in caplog.text
