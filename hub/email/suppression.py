"""The suppression list and the bounce webhook's events.

An address is suppressed for every mail (`*`: hard bounce, spam complaint) or for one
notification type (an unsubscribe from that type). Transactional mails without a type
(verification, password reset) honour only `*`.

The webhook accepts the two common shapes:
- Amazon SES notifications (`notificationType` Bounce / Complaint), bare or wrapped in an SNS
  envelope (`Type: Notification`, the SES JSON in `Message`); only `Permanent` bounces count;
- SendGrid event webhook batches (a list of `{event: bounce|dropped|spamreport, email, ...}`;
  `bounce` of `type: blocked` is temporary and ignored).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tortoise.exceptions import IntegrityError

from core.bus import EventBus
from db.models.email import EmailEvent, EmailEventKind, EmailMessage, EmailSuppression
from hub.preferences import TYPE_DEFAULTS, turn_off_email

EVERYTHING = "*"  # every mail, transactional included (hard bounces, complaints)
NOTIFICATIONS_SCOPE = "notifications"  # every notification mail (a digest's unsubscribe)


class SuppressionReason:
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


def normalize_address(address: str) -> str:
    return address.strip().lower()


async def is_suppressed(address: str, *, category: str) -> bool:
    scopes = [EVERYTHING] + ([category, NOTIFICATIONS_SCOPE] if category else [])
    return await EmailSuppression.filter(
        address=normalize_address(address), scope__in=scopes
    ).exists()


async def suppress(address: str, *, scope: str, reason: str, detail: str = "") -> bool:
    """Add the address (idempotent); True when it was not suppressed for `scope` before."""
    try:
        await EmailSuppression.create(
            address=normalize_address(address), scope=scope, reason=reason, detail=detail[:500]
        )
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class BounceEvent:
    address: str
    kind: EmailEventKind  # BOUNCE or COMPLAINT
    detail: str


def _ses_events(data: dict[str, Any]) -> list[BounceEvent]:
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        try:
            inner = json.loads(data["Message"])
        except ValueError:
            return []
        return _ses_events(inner) if isinstance(inner, dict) else []
    kind = data.get("notificationType") or data.get("eventType")
    events: list[BounceEvent] = []
    if kind == "Bounce":
        bounce = data.get("bounce") or {}
        if bounce.get("bounceType") != "Permanent":
            return []
        for recipient in bounce.get("bouncedRecipients") or []:
            address = recipient.get("emailAddress")
            if isinstance(address, str) and "@" in address:
                detail = str(recipient.get("diagnosticCode") or bounce.get("bounceSubType", ""))
                events.append(BounceEvent(address, EmailEventKind.BOUNCE, detail))
    elif kind == "Complaint":
        complaint = data.get("complaint") or {}
        for recipient in complaint.get("complainedRecipients") or []:
            address = recipient.get("emailAddress")
            if isinstance(address, str) and "@" in address:
                events.append(BounceEvent(address, EmailEventKind.COMPLAINT, "complaint"))
    return events


def _sendgrid_events(items: Iterable[Any]) -> list[BounceEvent]:
    events: list[BounceEvent] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        address = item.get("email")
        if not isinstance(address, str) or "@" not in address:
            continue
        name = item.get("event")
        if (name == "bounce" and item.get("type") != "blocked") or name == "dropped":
            detail = str(item.get("reason") or item.get("status") or name)
            events.append(BounceEvent(address, EmailEventKind.BOUNCE, detail))
        elif name == "spamreport":
            events.append(BounceEvent(address, EmailEventKind.COMPLAINT, "spamreport"))
    return events


def parse_bounce_payload(payload: Any) -> list[BounceEvent]:
    """The hard bounces and complaints in a webhook body (SES or SendGrid shaped)."""
    if isinstance(payload, list):
        return _sendgrid_events(payload)
    if isinstance(payload, dict):
        return _ses_events(payload)
    return []


async def apply_bounce_events(events: list[BounceEvent]) -> int:
    """Suppress each address for everything and log the event against its latest mail;
    returns how many addresses became suppressed."""
    added = 0
    for event in events:
        reason = (
            SuppressionReason.COMPLAINT
            if event.kind is EmailEventKind.COMPLAINT
            else SuppressionReason.HARD_BOUNCE
        )
        address = normalize_address(event.address)
        if await suppress(address, scope=EVERYTHING, reason=reason, detail=event.detail):
            added += 1
        latest = await EmailMessage.filter(to_address=address).order_by("-created_at").first()
        await EmailEvent.create(
            message_id=latest.id if latest else None,
            kind=event.kind,
            address=address,
            detail=event.detail[:500],
        )
    return added


def check_webhook_signature(*, secret: str, body: bytes, header: str) -> bool:
    """`header` is `sha256=<hex HMAC-SHA256 of the raw body under the shared secret>`."""
    scheme, _, signature = header.strip().partition("=")
    if scheme.lower() != "sha256" or not signature:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


async def apply_unsubscribe(*, user_id: UUID, address: str, type: str) -> None:
    """One-click unsubscribe: no more mail of `type` to the address (a digest's type,
    `notifications`, stands for every notification mail), and the user's email channel for
    that type (or all) is switched off. Idempotent."""
    await suppress(address, scope=type, reason=SuppressionReason.UNSUBSCRIBE)
    types = list(TYPE_DEFAULTS) if type == NOTIFICATIONS_SCOPE else [type]
    for name in types:
        await turn_off_email(user_id=user_id, type=name)
    await EmailEvent.create(
        kind=EmailEventKind.UNSUBSCRIBE, address=normalize_address(address), detail=type
    )


async def announce_suppressed(bus: EventBus, *, address: str, scope: str, reason: str) -> None:
    """`email.suppressed` on the bus: the seam for a marketing-platform connector (Mailchimp,
    ConvertKit), which subscribes to it and unsubscribes the contact there too, so campaigns
    and transactional mail honour one suppression list. Nothing in the hub listens yet."""
    await bus.emit(
        "email.suppressed",
        {"address": normalize_address(address), "scope": scope, "reason": reason},
        subject=f"email:{normalize_address(address)}",
    )
