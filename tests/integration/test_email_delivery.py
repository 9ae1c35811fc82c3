"""Notification mail end to end: an offline customer answered by staff gets, once the delay has
passed and if still unread, a DKIM-signed mail (text and HTML, List-Unsubscribe one-click) at a
real SMTP server on 127.0.0.1; preferences, quiet hours, the digest, read-cancels, retries and
dead letters, the bounce webhook and the one-click unsubscribe. Real app, real databases."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import dkim
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.app import create_app
from api.keys import BUS, EMAIL, KEYS
from core.clock import utcnow
from core.permissions import Role
from core.settings import Settings
from db.connection import open_database
from db.models.chat import Notification
from db.models.email import (
    EmailEvent,
    EmailEventKind,
    EmailMessage,
    EmailStatus,
    EmailSuppression,
    EmailVariantAssignment,
)
from db.models.push import DeliveryAttempt, DeliveryChannel, DeliveryStatus
from hub.email.dkim import dns_records
from tests.conftest import SettingsFactory
from tests.fakes.push_service import FakePushService
from tests.fakes.smtp_server import SmtpServer, run_smtp_server
from tests.identity import SignedIn, sign_in

Client = TestClient[Any, Any]
SENDER = "IdEinstein <noreply@ideinstein.test>"
PUBLIC_URL = "https://hub.ideinstein.test"
WEBHOOK_SECRET = "whsec-" + "x" * 32


@pytest.fixture(scope="session")
def dkim_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from run_smtp_server()


@pytest.fixture
def mail_settings(
    make_settings: SettingsFactory, migrated_database_url: str, smtp: SmtpServer, dkim_pem: str
) -> Settings:
    return make_settings(
        database_url=migrated_database_url,
        public_url=PUBLIC_URL,
        smtp_url=smtp.url,
        mail_from=SENDER,
        dkim_private_key=dkim_pem,
        notification_email_delay_seconds=0,
        email_poll_seconds=3600,  # the queue runs when woken (due now) or when a test says
        email_retry_base_seconds=0.001,
        email_max_attempts=3,
        email_webhook_secret=WEBHOOK_SECRET,
    )


@pytest.fixture
async def mail_client(aiohttp_client: Any, mail_settings: Settings) -> Client:
    client: Client = await aiohttp_client(create_app(mail_settings))
    return client


async def _people(
    client: Client, settings: Settings, *, email: str | None = None
) -> tuple[SignedIn, SignedIn]:
    assert client.app is not None
    keys = client.app[KEYS]
    customer = await sign_in(settings.database_url, keys, email=email)
    agent = await sign_in(settings.database_url, keys, role=Role.EDITOR)
    return customer, agent


async def _staff_reply(
    client: Client, customer: SignedIn, agent: SignedIn, body: str, conversation: str | None = None
) -> str:
    """The customer (offline: no socket) opened a conversation; staff answer in it."""
    if conversation is None:
        opened = await client.post(
            "/api/v1/conversations", json={"subject": "Quote"}, headers=customer.headers
        )
        conversation = (await opened.json())["conversation"]["id"]
    sent = await client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"client_msg_id": body[:60], "body": body},
        headers=agent.headers,
    )
    assert sent.status == 201, await sent.text()
    await _settle(client)
    return str(conversation)


async def _settle(client: Client) -> None:
    """Every bus handler (the router among them) has handled what was emitted so far."""
    assert client.app is not None
    for subscription in list(client.app[BUS]._subscriptions):
        await subscription.drain()


async def _subscribed_to_push(
    client: Client, customer: SignedIn, aiohttp_server: Any
) -> FakePushService:
    """A loopback push service, and the customer's browser subscribed to it."""
    key = (await (await client.get("/api/v1/push/vapid-public-key")).json())["public_key"]
    push_service = FakePushService(expected_key=key)
    server = await aiohttp_server(push_service.app(), host="127.0.0.1")
    push_service.attach(str(server.make_url("/")))
    subscribed = await client.post(
        "/api/v1/push/subscriptions",
        json=push_service.subscribe().json(),
        headers=customer.headers,
    )
    assert subscribed.status == 201
    return push_service


def _dns_for(settings: Settings) -> Any:
    published = {f"{r.name}.".encode(): r.value.encode() for r in dns_records(settings)}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return published.get(name)

    return lookup


async def test_offline_customer_gets_a_signed_mail_then_unsubscribes_in_one_click(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer
) -> None:
    customer, agent = await _people(mail_client, mail_settings)

    conversation = await _staff_reply(mail_client, customer, agent, "Your quote is ready.")
    [mail] = await smtp.recorder.wait_for(1)

    # The envelope, and a DKIM signature that verifies against the published record.
    assert mail.mail_from == "noreply@ideinstein.test"
    assert mail.rcpt_tos == [customer.email]
    assert dkim.verify(mail.raw, dnsfunc=_dns_for(mail_settings)) is True
    message = mail.message
    assert message["DKIM-Signature"] is not None
    signed = message["DKIM-Signature"].replace(" ", "").replace("\r\n", "")
    assert "d=ideinstein.test" in signed
    assert "s=ideinstein" in signed
    assert "list-unsubscribe:list-unsubscribe-post" in signed.lower()
    # Both parts, personalised and in the customer's (default) locale.
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert "Your quote is ready." in text.get_content()
    assert f"{PUBLIC_URL}/chat/{conversation}" in text.get_content()
    assert "<blockquote" in html.get_content()
    # Sticky A/B variant: the subject is the one of the variant this user was given.
    async with open_database(mail_settings.database_url):
        assignment = await EmailVariantAssignment.get(
            user_id=customer.user_id, template="chat_new_message"
        )
        row = await EmailMessage.get(user_id=customer.user_id)
        [attempt] = await DeliveryAttempt.filter(
            user_id=customer.user_id, channel=DeliveryChannel.EMAIL
        )
    assert (
        message["Subject"]
        == {
            "a": "New message from IdEinstein",
            "b": "You, our team answered you",
        }[assignment.variant]
    )
    assert row.variant == assignment.variant
    assert row.status is EmailStatus.SENT
    assert row.attempts == 1
    assert row.smtp_message_id == message["Message-ID"]
    assert (attempt.status, attempt.attempts) == (DeliveryStatus.SENT, 1)
    # List-Unsubscribe: mailto and https, with the one-click POST.
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, https = [part.strip(" <>") for part in message["List-Unsubscribe"].split(",")]
    assert mailto.startswith("mailto:unsubscribe@ideinstein.test?subject=unsubscribe")
    assert https.startswith(f"{PUBLIC_URL}/api/v1/email/unsubscribe/")
    assert https in text.get_content()

    # The mail provider follows it (RFC 8058: a POST with List-Unsubscribe=One-Click).
    answer = await mail_client.post(urlsplit(https).path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status == 200
    preferences = await (
        await mail_client.get("/api/v1/notification-preferences", headers=customer.headers)
    ).json()
    [chat] = [t for t in preferences["types"] if t["type"] == "chat.new_message"]
    assert chat["channels"] == {"in_app": True, "web_push": True, "email": False}
    async with open_database(mail_settings.database_url):
        [suppression] = await EmailSuppression.filter(address=customer.email)
        unsubscribed = await EmailEvent.filter(kind=EmailEventKind.UNSUBSCRIBE).count()
    assert (suppression.scope, suppression.reason) == ("chat.new_message", "unsubscribe")
    assert unsubscribed == 1

    # The next answer makes a notification, and no mail.
    await _staff_reply(mail_client, customer, agent, "Anything else?", conversation)
    assert mail_client.app is not None
    report = await mail_client.app[EMAIL].run_once()
    assert (report.composed, report.sent) == (0, 0)
    async with open_database(mail_settings.database_url):
        assert await Notification.filter(user_id=customer.user_id).count() == 2
        assert await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL).count() == 1
    assert len(smtp.recorder.received) == 1


async def test_a_type_switched_off_for_email_gets_no_mail(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer
) -> None:
    customer, agent = await _people(mail_client, mail_settings)
    put = await mail_client.put(
        "/api/v1/notification-preferences",
        json={"channels": {"chat.new_message": {"email": False}}},
        headers=customer.headers,
    )
    assert put.status == 200

    await _staff_reply(mail_client, customer, agent, "Hello")
    assert mail_client.app is not None
    report = await mail_client.app[EMAIL].run_once()

    assert (report.composed, report.sent) == (0, 0)
    async with open_database(mail_settings.database_url):
        assert await Notification.filter(user_id=customer.user_id).count() == 1
        assert await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL).count() == 0
        assert await EmailMessage.all().count() == 0
    assert smtp.recorder.received == []


async def test_quiet_hours_skip_web_push_and_hold_the_mail_until_they_end(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer, aiohttp_server: Any
) -> None:
    customer, agent = await _people(mail_client, mail_settings)
    push_service = await _subscribed_to_push(mail_client, customer, aiohttp_server)
    now = utcnow().astimezone(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    put = await mail_client.put(
        "/api/v1/notification-preferences",
        json={"quiet_hours": {"start": start, "end": end}, "timezone": "UTC"},
        headers=customer.headers,
    )
    assert put.status == 200

    await _staff_reply(mail_client, customer, agent, "Late answer")
    assert mail_client.app is not None
    report = await mail_client.app[EMAIL].run_once()

    assert report.sent == 0
    async with open_database(mail_settings.database_url):
        [attempt] = await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL)
    assert attempt.status is DeliveryStatus.PENDING
    assert attempt.next_attempt_at is not None
    expected_end = datetime.combine(
        (now + timedelta(hours=2)).date(),
        datetime.strptime(end, "%H:%M").time(),
        tzinfo=UTC,
    )
    assert attempt.next_attempt_at == expected_end
    assert smtp.recorder.received == []
    assert push_service.requests == []  # skipped, not postponed
    async with open_database(mail_settings.database_url):
        assert await DeliveryAttempt.filter(channel=DeliveryChannel.WEB_PUSH).count() == 0


async def test_two_notifications_in_the_digest_window_make_one_mail(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer
) -> None:
    customer, agent = await _people(mail_client, mail_settings)
    put = await mail_client.put(
        "/api/v1/notification-preferences",
        json={"digest_minutes": 30, "locale": "de"},
        headers=customer.headers,
    )
    assert put.status == 200
    conversation = await _staff_reply(mail_client, customer, agent, "Erste Antwort")
    await _staff_reply(mail_client, customer, agent, "Zweite Antwort", conversation)
    async with open_database(mail_settings.database_url):
        attempts = await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL).order_by(
            "created_at"
        )
        assert len(attempts) == 2
        assert all(a.next_attempt_at and a.next_attempt_at > utcnow() for a in attempts)
        # The window of the first one has passed.
        await DeliveryAttempt.filter(id=attempts[0].id).update(next_attempt_at=utcnow())

    assert mail_client.app is not None
    report = await mail_client.app[EMAIL].run_once()

    assert (report.composed, report.sent) == (1, 1)
    [mail] = smtp.recorder.received
    message = mail.message
    assert message["Subject"] == "2 neue Benachrichtigungen"
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    content = text.get_content()
    assert "Erste Antwort" in content
    assert "Zweite Antwort" in content
    assert "Diese E-Mails abbestellen" in content
    async with open_database(mail_settings.database_url):
        statuses = await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL).values_list(
            "status", flat=True
        )
        row = await EmailMessage.get()
    assert sorted(statuses) == [DeliveryStatus.SENT, DeliveryStatus.SENT]
    assert (row.template, row.category, row.locale) == ("digest", "notifications", "de")
    assert len(row.notification_ids) == 2


async def test_reading_the_notification_cancels_the_pending_mail(
    aiohttp_client: Any, mail_settings: Settings, smtp: SmtpServer
) -> None:
    settings = mail_settings.model_copy(update={"notification_email_delay_seconds": 0.3})
    client: Client = await aiohttp_client(create_app(settings))
    customer, agent = await _people(client, settings)
    await _staff_reply(client, customer, agent, "Answer")
    async with open_database(settings.database_url):
        [attempt] = await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL)
        assert attempt.status is DeliveryStatus.PENDING

    read = await client.post(
        f"/api/v1/notifications/{attempt.notification_id}/read", headers=customer.headers
    )
    assert read.status == 200
    await _settle(client)
    assert attempt.next_attempt_at is not None
    await asyncio.sleep(max(0.0, (attempt.next_attempt_at - utcnow()).total_seconds()) + 0.05)
    assert client.app is not None
    report = await client.app[EMAIL].run_once()

    assert (report.composed, report.sent) == (0, 0)
    async with open_database(settings.database_url):
        cancelled = await DeliveryAttempt.get(id=attempt.id)
        assert await EmailMessage.all().count() == 0
    assert (cancelled.status, cancelled.last_error) == (DeliveryStatus.CANCELLED, "read")
    assert smtp.recorder.received == []


async def test_a_mail_read_after_it_was_composed_is_not_sent(
    aiohttp_client: Any, mail_settings: Settings, smtp: SmtpServer
) -> None:
    settings = mail_settings.model_copy(update={"email_retry_base_seconds": 60.0})
    mail_client: Client = await aiohttp_client(create_app(settings))
    customer, agent = await _people(mail_client, settings, email="full-later@example.com")
    await _staff_reply(mail_client, customer, agent, "Answer")  # 451: composed, waits to retry
    async with open_database(settings.database_url):
        row = await _wait_for_mail(EmailStatus.QUEUED, attempts=1)
        notification = await Notification.get(user_id=customer.user_id)

    read = await mail_client.post(
        f"/api/v1/notifications/{notification.id}/read", headers=customer.headers
    )
    assert read.status == 200
    await _settle(mail_client)
    async with open_database(settings.database_url):  # its retry falls due
        await EmailMessage.filter(id=row.id).update(next_attempt_at=utcnow())
    assert mail_client.app is not None
    report = await mail_client.app[EMAIL].run_once()

    assert report.cancelled == 1
    async with open_database(settings.database_url):
        after = await EmailMessage.get(id=row.id)
    assert (after.status, after.attempts) == (EmailStatus.CANCELLED, 1)
    assert smtp.recorder.refused == [("full-later@example.com", 451)]


async def test_a_refusing_server_is_retried_with_backoff_then_the_mail_is_a_dead_letter(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer
) -> None:
    customer, agent = await _people(mail_client, mail_settings, email="full-box@example.com")
    await _staff_reply(mail_client, customer, agent, "Answer")
    assert mail_client.app is not None
    queue = mail_client.app[EMAIL]
    async with open_database(mail_settings.database_url), asyncio.timeout(30):
        while True:  # each retry falls due after the (tiny) backoff; the queue's own task
            found = await EmailMessage.first()  # may hold a try's lease meanwhile
            if found is not None and found.status is EmailStatus.DEAD:
                break
            await queue.run_once()
            await asyncio.sleep(0.01)
        [attempt] = await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL)
        row = await EmailMessage.get()

    assert (row.status, row.attempts) == (EmailStatus.DEAD, 3)
    assert "451" in row.last_error
    assert (attempt.status, attempt.attempts) == (DeliveryStatus.DEAD, 3)
    assert smtp.recorder.refused == [("full-box@example.com", 451)] * 3
    assert smtp.recorder.received == []
    # A dead letter can be given new tries by an operator.
    async with open_database(mail_settings.database_url):
        assert await queue.requeue_dead(row.id) is True
        again = await EmailMessage.get(id=row.id)
    assert (again.status, again.attempts) == (EmailStatus.QUEUED, 0)


async def test_a_550_is_a_permanent_failure_that_suppresses_the_address(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer
) -> None:
    customer, agent = await _people(mail_client, mail_settings, email="nobody-here@example.com")
    await _staff_reply(mail_client, customer, agent, "Answer")
    async with open_database(mail_settings.database_url):
        row = await _wait_for_mail(EmailStatus.FAILED, attempts=1)
        [suppression] = await EmailSuppression.all()
    assert "550" in row.last_error
    assert (suppression.address, suppression.scope, suppression.reason) == (
        "nobody-here@example.com",
        "*",
        "hard_bounce",
    )
    assert smtp.recorder.received == []


def _signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Webhook-Signature": f"sha256={digest}", "Content-Type": "application/json"}


async def test_the_bounce_webhook_suppresses_the_address_and_no_mail_goes_there(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer
) -> None:
    customer, agent = await _people(mail_client, mail_settings)
    ses = {
        "Type": "Notification",
        "Message": json.dumps(
            {
                "notificationType": "Bounce",
                "bounce": {
                    "bounceType": "Permanent",
                    "bounceSubType": "General",
                    "bouncedRecipients": [
                        {"emailAddress": customer.email.upper(), "diagnosticCode": "smtp; 550"}
                    ],
                },
            }
        ),
    }
    body = json.dumps(ses).encode()
    announced: list[dict[str, Any]] = []

    async def record(event: Any) -> None:
        announced.append(event.data)

    assert mail_client.app is not None
    await mail_client.app[BUS].subscribe("email.suppressed", record)

    forged = await mail_client.post(
        "/api/v1/email/bounces", data=body, headers=_signed(body, "not-the-secret")
    )
    assert forged.status == 401
    assert (await forged.json())["error"]["code"] == "invalid_signature"
    async with open_database(mail_settings.database_url):
        assert await EmailSuppression.all().count() == 0

    accepted = await mail_client.post("/api/v1/email/bounces", data=body, headers=_signed(body))
    assert accepted.status == 200
    await _settle(mail_client)
    # The seam for a marketing platform: the suppression is announced on the bus.
    assert announced == [{"address": customer.email, "scope": "*", "reason": "bounce"}]
    assert await accepted.json() == {"events": 1, "suppressed": 1}

    await _staff_reply(mail_client, customer, agent, "Answer")
    async with open_database(mail_settings.database_url):
        row = await _wait_for_mail(EmailStatus.SUPPRESSED, attempts=0)
        [attempt] = await DeliveryAttempt.filter(channel=DeliveryChannel.EMAIL)
        [event] = await EmailEvent.filter(kind=EmailEventKind.BOUNCE)
    assert row.to_address == customer.email
    assert (attempt.status, attempt.last_error) == (DeliveryStatus.FAILED, "suppressed")
    assert event.address == customer.email
    assert smtp.recorder.received == []


async def test_sendgrid_shaped_events_are_understood(
    mail_client: Client, mail_settings: Settings
) -> None:
    events = [
        {"event": "bounce", "type": "bounce", "email": "gone@example.org", "reason": "550"},
        {"event": "bounce", "type": "blocked", "email": "later@example.org"},
        {"event": "spamreport", "email": "angry@example.org"},
        {"event": "delivered", "email": "fine@example.org"},
    ]
    body = json.dumps(events).encode()

    accepted = await mail_client.post("/api/v1/email/bounces", data=body, headers=_signed(body))

    assert await accepted.json() == {"events": 2, "suppressed": 2}
    async with open_database(mail_settings.database_url):
        rows = await EmailSuppression.all().order_by("address").values_list("address", "reason")
    assert rows == [("angry@example.org", "complaint"), ("gone@example.org", "hard_bounce")]


async def test_the_webhook_does_not_exist_without_a_secret(
    aiohttp_client: Any, mail_settings: Settings
) -> None:
    settings = mail_settings.model_copy(update={"email_webhook_secret": None})
    client: Client = await aiohttp_client(create_app(settings))
    body = b"[]"

    answer = await client.post("/api/v1/email/bounces", data=body, headers=_signed(body))

    assert answer.status == 404


async def _wait_for_mail(status: EmailStatus, *, attempts: int) -> EmailMessage:
    for _ in range(250):
        row = await EmailMessage.filter(status=status, attempts=attempts).first()
        if row is not None:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"no mail became {status} after {attempts} tries")


async def test_each_recipient_domain_has_a_send_rate(
    aiohttp_client: Any, mail_settings: Settings, smtp: SmtpServer
) -> None:
    settings = mail_settings.model_copy(update={"email_domain_rate_per_minute": 1})
    client: Client = await aiohttp_client(create_app(settings))
    assert client.app is not None
    queue = client.app[EMAIL]
    for address in ("one@busy.example", "two@busy.example", "three@other.example"):
        await queue.enqueue(
            to=address, template="password_reset", context={"name": "", "url": "https://x/"}
        )

    while len(smtp.recorder.received) < 2:  # the woken queue sends what the rate allows
        await queue.run_once()
    await queue.run_once()

    assert sorted(r.rcpt_tos[0] for r in smtp.recorder.received) in (
        ["one@busy.example", "three@other.example"],
        ["three@other.example", "two@busy.example"],
    )
    async with open_database(settings.database_url):
        [waiting] = await EmailMessage.filter(status=EmailStatus.QUEUED)
    assert (waiting.attempts, waiting.last_error) == (0, "rate_limited")
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at > utcnow() + timedelta(seconds=30)


async def test_mail_left_by_a_stopped_process_is_sent_after_a_restart(
    aiohttp_client: Any, mail_settings: Settings, smtp: SmtpServer
) -> None:
    """Rows are the queue: a mail that was queued, and one whose sender died mid-try (its
    claim expired), are both sent by the next process that starts."""
    async with open_database(mail_settings.database_url):
        user = await sign_in(mail_settings.database_url, _keys(mail_settings))
        await EmailMessage.create(
            to_address="queued@example.com",
            template="password_reset",
            context={"name": "Q", "url": "https://x/q"},
            next_attempt_at=utcnow() - timedelta(minutes=5),
        )
        await EmailMessage.create(
            user_id=user.user_id,
            to_address="crashed@example.com",
            template="verify_email",
            context={"name": "C", "url": "https://x/c"},
            status=EmailStatus.SENDING,
            attempts=1,
            claimed_until=utcnow() - timedelta(seconds=1),
            next_attempt_at=utcnow() - timedelta(minutes=5),
        )

    await aiohttp_client(create_app(mail_settings))  # its queue looks at start-up

    received = await smtp.recorder.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["crashed@example.com", "queued@example.com"]
    async with open_database(mail_settings.database_url):
        rows = await EmailMessage.all().order_by("to_address").values_list("status", "attempts")
    assert rows == [(EmailStatus.SENT, 2), (EmailStatus.SENT, 1)]


@pytest.mark.databases("postgres")
async def test_two_hub_processes_send_each_mail_once(
    mail_settings: Settings, smtp: SmtpServer, database_kind: str
) -> None:
    from core.rate_limit import create_rate_limiter
    from hub.email.setup import create_email_queue
    from hub.email.transport import create_signed_mailer

    keys = _keys(mail_settings)
    queues = [
        create_email_queue(
            mail_settings,
            mailer=create_signed_mailer(mail_settings),
            limiter=create_rate_limiter(redis=None, prefix="t:"),
            keys=keys,
        )
        for _ in range(2)
    ]
    async with open_database(mail_settings.database_url):
        for n in range(12):
            await queues[n % 2].enqueue(
                to=f"user{n}@example.com",
                template="password_reset",
                context={"name": "", "url": f"https://x/{n}"},
            )

        reports = await asyncio.gather(*(q.run_once() for q in queues))
        statuses = await EmailMessage.all().values_list("status", "attempts")

    assert sum(r.sent for r in reports) == 12
    assert len(smtp.recorder.received) == 12
    assert sorted(r.rcpt_tos[0] for r in smtp.recorder.received) == sorted(
        f"user{n}@example.com" for n in range(12)
    )
    assert set(statuses) == {(EmailStatus.SENT, 1)}


def _keys(settings: Settings) -> Any:
    from core.secret_key import load_key_ring

    return load_key_ring(settings)


async def test_offline_customer_gets_a_decryptable_push_then_a_signed_mail_while_unread(
    mail_client: Client, mail_settings: Settings, smtp: SmtpServer, aiohttp_server: Any
) -> None:
    """The issue's "done when": staff answer a customer who is offline; the loopback push
    service receives a web push it can decrypt; the notification stays unread past the delay,
    so a DKIM-signed mail reaches the loopback SMTP server."""
    customer, agent = await _people(mail_client, mail_settings)
    push_service = await _subscribed_to_push(mail_client, customer, aiohttp_server)

    conversation = await _staff_reply(mail_client, customer, agent, "Your drawing is approved.")

    [pushed] = await push_service.wait_for(1)
    payload = json.loads(push_service.plaintexts()[0])
    assert payload["type"] == "chat.new_message"
    assert "Your drawing is approved." in payload["body"]
    assert pushed is not None
    [mail] = await smtp.recorder.wait_for(1)
    assert mail.rcpt_tos == [customer.email]
    assert dkim.verify(mail.raw, dnsfunc=_dns_for(mail_settings)) is True
    assert f"/chat/{conversation}" in mail.message.get_body(("plain",)).get_content()
    async with open_database(mail_settings.database_url), asyncio.timeout(10):
        while True:  # the queue records the send just after the server has the mail
            attempts = {
                a.channel: a.status for a in await DeliveryAttempt.filter(user_id=customer.user_id)
            }
            if attempts.get(DeliveryChannel.EMAIL) is not DeliveryStatus.PENDING:
                break
            await asyncio.sleep(0.02)
    assert attempts == {
        DeliveryChannel.WEB_PUSH: DeliveryStatus.SENT,
        DeliveryChannel.EMAIL: DeliveryStatus.SENT,
    }
