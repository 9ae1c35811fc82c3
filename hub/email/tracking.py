"""Signed links in mail: open pixel, click redirect, one-click unsubscribe.

Every token is `base64url(payload).base64url(HMAC-SHA256(key, purpose NUL payload))[:32]`,
signed with the current key of the app's key ring and checked against every key still in it
(a key rotation does not break the links in mails already sent). The purpose is part of what
is signed, so an open token is no unsubscribe token.

Click redirects go only to PUBLIC_URL's host or a host in EMAIL_REDIRECT_HOSTS, over http(s):
anything else is refused even with a valid signature (no open redirect, should a key leak).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlsplit
from uuid import UUID

from core.clock import utcnow
from core.errors import NotFound, ValidationFailed
from core.logs import get_logger
from core.tokens import KeyRing
from db.models.email import EmailEvent, EmailEventKind, EmailMessage

log = get_logger(__name__)

OPEN = "open"
CLICK = "click"
UNSUBSCRIBE = "unsubscribe"
_SIG_CHARS = 32

# A 1x1 transparent GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class BadToken(NotFound):
    default_code = "invalid_link"
    default_message = "This link is not valid"


class LinkSigner:
    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    @staticmethod
    def _mac(key: str, purpose: str, payload: bytes) -> str:
        digest = hmac.new(key.encode(), purpose.encode() + b"\0" + payload, hashlib.sha256)
        return _b64(digest.digest())[:_SIG_CHARS]

    def sign(self, purpose: str, payload: str) -> str:
        raw = payload.encode()
        return f"{_b64(raw)}.{self._mac(self._keys.current.value, purpose, raw)}"

    def verify(self, purpose: str, token: str) -> str:
        """The payload of a token this app signed for `purpose`; `BadToken` otherwise."""
        encoded, _, signature = token.partition(".")
        try:
            raw = _unb64(encoded)
            payload = raw.decode()
        except (binascii.Error, ValueError):
            raise BadToken() from None
        for key in (self._keys.current, *self._keys.previous):
            if hmac.compare_digest(self._mac(key.value, purpose, raw), signature):
                return payload
        raise BadToken()


@dataclass(frozen=True, slots=True)
class UnsubscribeTarget:
    user_id: UUID
    address: str
    type: str


class MailLinks:
    """Builds and reads the signed URLs that go into mails."""

    def __init__(self, *, signer: LinkSigner, public_url: str, redirect_hosts: list[str]) -> None:
        self.signer = signer
        self.public_url = public_url.rstrip("/")
        public_host = (urlsplit(public_url).hostname or "").lower()
        self._hosts = frozenset({public_host, *redirect_hosts})

    def open_pixel(self, message_id: UUID) -> str:
        token = self.signer.sign(OPEN, str(message_id))
        return f"{self.public_url}/api/v1/email/open/{token}.gif"

    def click(self, message_id: UUID, target: str) -> str:
        """A tracked link to `target` (made absolute on PUBLIC_URL); a target we would refuse
        to redirect to is returned untracked, never signed."""
        absolute = self.absolute(target)
        try:
            check_redirect(absolute, self._hosts)
        except ValidationFailed:
            return absolute
        token = self.signer.sign(CLICK, f"{message_id}|{absolute}")
        return f"{self.public_url}/api/v1/email/click/{token}"

    def absolute(self, link: str) -> str:
        if link.startswith("/") and not link.startswith("//"):
            return self.public_url + link
        return link

    def unsubscribe(self, *, user_id: UUID, address: str, type: str) -> str:
        return self.signer.sign(UNSUBSCRIBE, f"{user_id}|{address}|{type}")

    def unsubscribe_url(self, token: str) -> str:
        return f"{self.public_url}/api/v1/email/unsubscribe/{quote(token)}"

    def unsubscribe_mailto(self, token: str, *, domain: str) -> str:
        # RFC 6068: a space is %20 in a mailto: URI (a `+` would stay a plus).
        return f"mailto:unsubscribe@{domain}?subject={quote('unsubscribe ' + token, safe='')}"

    def read_unsubscribe(self, token: str) -> UnsubscribeTarget:
        user_id, rest = _split(self.signer.verify(UNSUBSCRIBE, token), 2)
        address, _, type = rest.rpartition("|")
        if not address or not type:
            raise BadToken()
        try:
            return UnsubscribeTarget(UUID(user_id), address, type)
        except ValueError:
            raise BadToken() from None

    def read_open(self, token: str) -> UUID:
        try:
            return UUID(self.signer.verify(OPEN, token))
        except ValueError:
            raise BadToken() from None

    def read_click(self, token: str) -> tuple[UUID, str]:
        message_id, target = _split(self.signer.verify(CLICK, token), 2)
        try:
            ident = UUID(message_id)
        except ValueError:
            raise BadToken() from None
        check_redirect(target, self._hosts)
        return ident, target


def _split(payload: str, parts: int) -> list[str]:
    pieces = payload.split("|", parts - 1)
    if len(pieces) != parts:
        raise BadToken()
    return pieces


def check_redirect(url: str, hosts: frozenset[str]) -> str:
    """`url` if a click may lead there: http(s), no credentials, an allowed host."""
    refused = ValidationFailed("redirect_not_allowed", "This link may not lead there")
    if any(ch in url for ch in "\r\n\t\\"):
        raise refused
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise refused from None
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        raise refused
    if not host or host not in hosts:
        raise refused
    return url


async def record_open(message_id: UUID) -> None:
    """The pixel was fetched: first open time, and one event per fetch."""
    if not await EmailMessage.filter(id=message_id).exists():
        return
    await EmailMessage.filter(id=message_id, opened_at__isnull=True).update(opened_at=utcnow())
    await EmailEvent.create(message_id=message_id, kind=EmailEventKind.OPEN)


async def record_click(message_id: UUID, target: str) -> None:
    if not await EmailMessage.filter(id=message_id).exists():
        return
    now = utcnow()
    await EmailMessage.filter(id=message_id, clicked_at__isnull=True).update(clicked_at=now)
    # A click shows the mail was opened, even with images blocked.
    await EmailMessage.filter(id=message_id, opened_at__isnull=True).update(opened_at=now)
    await EmailEvent.create(message_id=message_id, kind=EmailEventKind.CLICK, detail=target[:500])
