"""Signed mail links: tokens bound to their purpose and key ring, the redirect allowlist,
and the bounce webhook's parsing and signature check."""

from __future__ import annotations

import hashlib
import hmac
import json
from uuid import uuid4

import pytest

from core.errors import ValidationFailed
from core.tokens import KeyRing, signing_key
from db.models.email import EmailEventKind
from hub.email.suppression import BounceEvent, check_webhook_signature, parse_bounce_payload
from hub.email.tracking import CLICK, OPEN, BadToken, LinkSigner, MailLinks, check_redirect

OLD = signing_key("o" * 40)
NEW = signing_key("n" * 40)
HOSTS = frozenset({"hub.example", "docs.example"})


def _links(ring: KeyRing) -> MailLinks:
    return MailLinks(
        signer=LinkSigner(ring), public_url="https://hub.example", redirect_hosts=["docs.example"]
    )


def test_a_token_is_bound_to_its_purpose() -> None:
    signer = LinkSigner(KeyRing(NEW))
    token = signer.sign(OPEN, "payload")

    assert signer.verify(OPEN, token) == "payload"
    with pytest.raises(BadToken):
        signer.verify(CLICK, token)
    with pytest.raises(BadToken):
        signer.verify(OPEN, token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(BadToken):
        signer.verify(OPEN, "not-a-token")


def test_links_signed_before_a_key_rotation_still_work() -> None:
    before = LinkSigner(KeyRing(OLD)).sign(OPEN, "x")

    assert LinkSigner(KeyRing(NEW, previous=(OLD,))).verify(OPEN, before) == "x"
    with pytest.raises(BadToken):
        LinkSigner(KeyRing(NEW)).verify(OPEN, before)


def test_unsubscribe_tokens_round_trip_odd_addresses() -> None:
    links = _links(KeyRing(NEW))
    user = uuid4()
    token = links.unsubscribe(user_id=user, address="a|b@example.com", type="file.shared")

    target = links.read_unsubscribe(token)

    assert (target.user_id, target.address, target.type) == (user, "a|b@example.com", "file.shared")
    assert links.unsubscribe_url(token) == f"https://hub.example/api/v1/email/unsubscribe/{token}"


@pytest.mark.parametrize(
    "url",
    ["https://hub.example/x", "http://hub.example:8080/y?z=1", "https://docs.example/guide"],
)
def test_allowed_redirects(url: str) -> None:
    assert check_redirect(url, HOSTS) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/",
        "//evil.example/",
        "/relative/path",
        "javascript:alert(1)",
        "data:text/html,hi",
        "https://hub.example@evil.example/",
        "https://user:pw@hub.example/",
        "https://evil.example\\@hub.example/",
        "https://hub.example.evil.example/",
        "https://hub.example\r\nSet-Cookie: x=1",
        "https://hub.example:99999/",
    ],
)
def test_refused_redirects(url: str) -> None:
    with pytest.raises(ValidationFailed):
        check_redirect(url, HOSTS)


def test_click_links_are_only_made_for_allowed_targets() -> None:
    links = _links(KeyRing(NEW))
    message = uuid4()

    tracked = links.click(message, "/files/1")
    foreign = links.click(message, "https://evil.example/")

    assert tracked.startswith("https://hub.example/api/v1/email/click/")
    assert links.read_click(tracked.rsplit("/", 1)[1]) == (message, "https://hub.example/files/1")
    assert foreign == "https://evil.example/"


def test_webhook_signature() -> None:
    body = b'{"a":1}'
    good = "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()

    assert check_webhook_signature(secret="secret", body=body, header=good) is True
    assert check_webhook_signature(secret="secret", body=body + b" ", header=good) is False
    assert check_webhook_signature(secret="other", body=body, header=good) is False
    assert check_webhook_signature(secret="secret", body=body, header="") is False
    assert check_webhook_signature(secret="secret", body=body, header=good[7:]) is False


def test_ses_bounces_and_complaints_bare_or_in_sns() -> None:
    permanent = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": "a@example.com", "diagnosticCode": "550"}],
        },
    }
    transient = {
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "b@x.y"}]},
    }
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "c@example.com"}]},
    }

    assert parse_bounce_payload(permanent) == [
        BounceEvent("a@example.com", EmailEventKind.BOUNCE, "550")
    ]
    assert parse_bounce_payload(transient) == []
    assert parse_bounce_payload({"Type": "Notification", "Message": json.dumps(complaint)}) == [
        BounceEvent("c@example.com", EmailEventKind.COMPLAINT, "complaint")
    ]
    assert parse_bounce_payload({"Type": "Notification", "Message": "{oops"}) == []
    assert parse_bounce_payload("text") == []
