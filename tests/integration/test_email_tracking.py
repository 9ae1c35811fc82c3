"""Open pixel, click redirect (never an open redirect), the unsubscribe page and per-variant
results, on a mail the queue wrote to the embedded outbox."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import EMAIL, KEYS
from core.permissions import Role
from core.settings import Settings
from db.connection import open_database
from db.models.email import EmailEvent, EmailEventKind, EmailMessage, EmailSuppression
from hub.email.tracking import CLICK, PIXEL_GIF, LinkSigner
from tests.conftest import SettingsFactory
from tests.identity import SignedIn, sign_in

Client = TestClient[Any, Any]
PUBLIC_URL = "https://hub.ideinstein.test"
TARGET = f"{PUBLIC_URL}/files/42?tab=renders"


@pytest.fixture
def tracked_settings(make_settings: SettingsFactory, migrated_database_url: str) -> Settings:
    return make_settings(
        database_url=migrated_database_url,
        public_url=PUBLIC_URL,
        email_poll_seconds=3600,
        email_redirect_hosts="docs.ideinstein.test",
    )


@pytest.fixture
async def tracked(aiohttp_client: Any, tracked_settings: Settings) -> tuple[Client, SignedIn]:
    client: Client = await aiohttp_client(create_app(tracked_settings))
    assert client.app is not None
    customer = await sign_in(tracked_settings.database_url, client.app[KEYS])
    return client, customer


async def _send_render_mail(client: Client, customer: SignedIn) -> tuple[UUID, MimeMessage]:
    assert client.app is not None
    queue = client.app[EMAIL]
    row = await queue.enqueue(
        to=customer.email,
        template="render_completed",
        category="render.completed",
        user_id=customer.user_id,
        context={"title": "bracket.step", "body": "4 views", "link_url": TARGET},
    )
    await queue.run_once()  # sends it, unless the queue (woken by enqueue) already did
    return row.id, _only_outbox_mail(client)


def _only_outbox_mail(client: Client) -> MimeMessage:
    assert client.app is not None
    outbox = Path(client.app[EMAIL].mailer.directory)  # type: ignore[attr-defined]
    [path] = sorted(outbox.glob("*.eml"))
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, MimeMessage)
    return parsed


def _links(message: MimeMessage) -> tuple[str, str]:
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    content = html.get_content()
    [pixel] = re.findall(r'<img src="([^"]+)"', content)
    clicks = re.findall(r'href="([^"]+/api/v1/email/click/[^"]+)"', content)
    return pixel, clicks[0]


async def test_the_pixel_records_an_open(
    tracked: tuple[Client, SignedIn], tracked_settings: Settings
) -> None:
    client, customer = tracked
    message_id, message = await _send_render_mail(client, customer)
    pixel, _ = _links(message)
    assert pixel.startswith(f"{PUBLIC_URL}/api/v1/email/open/")

    first = await client.get(urlsplit(pixel).path)
    second = await client.get(urlsplit(pixel).path)

    assert first.status == 200
    assert first.content_type == "image/gif"
    assert await first.read() == PIXEL_GIF
    assert second.status == 200
    async with open_database(tracked_settings.database_url):
        row = await EmailMessage.get(id=message_id)
        opens = await EmailEvent.filter(message_id=message_id, kind=EmailEventKind.OPEN).count()
    assert row.opened_at is not None
    assert opens == 2


async def test_a_click_is_counted_and_redirected_to_our_own_page(
    tracked: tuple[Client, SignedIn], tracked_settings: Settings
) -> None:
    client, customer = tracked
    message_id, message = await _send_render_mail(client, customer)
    _, click = _links(message)

    answer = await client.get(urlsplit(click).path, allow_redirects=False)

    assert answer.status == 302
    assert answer.headers["Location"] == TARGET
    async with open_database(tracked_settings.database_url):
        row = await EmailMessage.get(id=message_id)
        [event] = await EmailEvent.filter(message_id=message_id, kind=EmailEventKind.CLICK)
    assert row.clicked_at is not None
    assert row.opened_at is not None  # a click implies the mail was opened
    assert event.detail == TARGET


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "javascript:alert(1)",
        "https://hub.ideinstein.test@evil.example/",
        "https://hub.ideinstein.test.evil.example/",
    ],
)
async def test_a_signed_click_to_a_foreign_host_is_refused(
    tracked: tuple[Client, SignedIn], tracked_settings: Settings, target: str
) -> None:
    """Even a correctly signed token (a leaked key, a bug) never makes an open redirect."""
    client, customer = tracked
    message_id, _ = await _send_render_mail(client, customer)
    assert client.app is not None
    token = LinkSigner(client.app[KEYS]).sign(CLICK, f"{message_id}|{target}")

    answer = await client.get(f"/api/v1/email/click/{token}", allow_redirects=False)

    assert answer.status == 422
    assert (await answer.json())["error"]["code"] == "redirect_not_allowed"
    assert "Location" not in answer.headers
    async with open_database(tracked_settings.database_url):
        assert await EmailEvent.filter(kind=EmailEventKind.CLICK).count() == 0
        assert (await EmailMessage.get(id=message_id)).clicked_at is None


async def test_an_allowlisted_host_is_a_valid_target(tracked: tuple[Client, SignedIn]) -> None:
    client, customer = tracked
    message_id, _ = await _send_render_mail(client, customer)
    assert client.app is not None
    links = client.app[EMAIL].composer.links
    tracked_url = links.click(message_id, "https://docs.ideinstein.test/guide")
    untracked = links.click(message_id, "https://evil.example/")

    answer = await client.get(urlsplit(tracked_url).path, allow_redirects=False)

    assert answer.status == 302
    assert answer.headers["Location"] == "https://docs.ideinstein.test/guide"
    assert untracked == "https://evil.example/"  # never signed: nothing to follow through us


async def test_a_tampered_token_is_not_found(
    tracked: tuple[Client, SignedIn], tracked_settings: Settings
) -> None:
    client, customer = tracked
    _, message = await _send_render_mail(client, customer)
    _, click = _links(message)
    token = urlsplit(click).path.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    answer = await client.get(f"/api/v1/email/click/{forged}", allow_redirects=False)
    pixel = await client.get(f"/api/v1/email/open/{forged}.gif")

    assert answer.status == 404
    assert (await answer.json())["error"]["code"] == "invalid_link"
    assert pixel.status == 404
    async with open_database(tracked_settings.database_url):
        assert await EmailEvent.all().count() == 0


async def test_the_unsubscribe_page_asks_before_it_unsubscribes(
    tracked: tuple[Client, SignedIn], tracked_settings: Settings
) -> None:
    client, customer = tracked
    _, message = await _send_render_mail(client, customer)
    https = message["List-Unsubscribe"].split(",")[1].strip(" <>")

    page = await client.get(urlsplit(https).path)

    assert page.status == 200
    assert '<form method="post">' in await page.text()
    async with open_database(tracked_settings.database_url):
        assert await EmailSuppression.all().count() == 0

    confirmed = await client.post(urlsplit(https).path, data={"List-Unsubscribe": "One-Click"})

    assert confirmed.status == 200
    async with open_database(tracked_settings.database_url):
        [row] = await EmailSuppression.all()
    assert (row.address, row.scope) == (customer.email, "render.completed")


async def test_results_per_variant_for_staff_only(
    tracked: tuple[Client, SignedIn], tracked_settings: Settings
) -> None:
    client, customer = tracked
    _, message = await _send_render_mail(client, customer)
    pixel, _ = _links(message)
    await client.get(urlsplit(pixel).path)
    assert client.app is not None
    editor = await sign_in(tracked_settings.database_url, client.app[KEYS], role=Role.EDITOR)

    refused = await client.get("/api/v1/email/stats", headers=customer.headers)
    stats = await client.get(
        "/api/v1/email/stats", params={"template": "render_completed"}, headers=editor.headers
    )

    assert refused.status == 403
    assert await stats.json() == {
        "items": [
            {
                "template": "render_completed",
                "variant": "a",
                "sent": 1,
                "opened": 1,
                "clicked": 0,
                "bounced": 0,
                "open_rate": 1.0,
                "click_rate": 0.0,
                "bounce_rate": 0.0,
            }
        ]
    }
