"""The notification router: after the inbox row and the in-app push, reach users elsewhere.

It listens to `notification.created`: online users have had the socket event (every node
relays it to its own sockets); for a user who is not online it sends web push to each of their
subscriptions. Every hub node hears the event, so a claim in Redis (SET NX) lets exactly one
node route each notification. On `notification.read` a push still waiting for a retry, and a
notification mail still waiting for its delay, are cancelled.

The user's preferences decide (hub.preferences): a channel switched off for the type is not
used; during quiet hours web push is skipped and the mail waits for their end. The mail is a
`DeliveryAttempt` (channel `email`) due after NOTIFICATION_EMAIL_DELAY_SECONDS, which the
mail queue (hub.email.queue) picks up when due, if the notification is still unread.
"""

from __future__ import annotations

import abc
from datetime import datetime
from uuid import UUID

from redis.asyncio import Redis

from core.bus import Event
from core.clock import utcnow
from core.logs import get_logger
from db.models.push import DeliveryAttempt, DeliveryStatus
from hub.email.queue import EmailQueue
from hub.notify import NotificationView
from hub.preferences import Channel, load_preferences
from hub.presence import PresenceStore
from hub.push import WebPushSender

log = get_logger(__name__)

CLAIM_TTL_SECONDS = 24 * 3600


class Claims(abc.ABC):
    """First come, only served: `first(key)` is true for exactly one caller."""

    @abc.abstractmethod
    async def first(self, key: str) -> bool: ...


class LocalClaims(Claims):
    """One process (embedded mode): the in-process bus delivers each event once already."""

    async def first(self, key: str) -> bool:
        return True


class RedisClaims(Claims):
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}claim:"

    async def first(self, key: str) -> bool:
        won = await self._redis.set(self._prefix + key, b"1", nx=True, ex=CLAIM_TTL_SECONDS)
        return bool(won)


def create_claims(*, redis: Redis | None, prefix: str) -> Claims:
    return LocalClaims() if redis is None else RedisClaims(redis, prefix=prefix)


def notification_from_event(event: Event) -> NotificationView:
    data = event.data
    return NotificationView(
        id=UUID(data["id"]),
        user_id=UUID(data["user_id"]),
        type=data["type"],
        title=data["title"],
        body=data.get("body", ""),
        link=data.get("link", ""),
        data=dict(data.get("data", {})),
        created_at=datetime.fromisoformat(data["created_at"]),
        read=bool(data.get("read", False)),
    )


class NotificationRouter:
    def __init__(
        self,
        *,
        presence: PresenceStore,
        push: WebPushSender,
        claims: Claims,
        email: EmailQueue | None = None,
    ) -> None:
        self._presence = presence
        self._push = push
        self._claims = claims
        self._email = email

    async def on_read(self, event: Event) -> None:
        """Read in any channel: a push still waiting for its retry is no longer wanted.
        Every node may run this; the update is idempotent."""
        ids = event.data.get("ids")
        if not isinstance(ids, list) or not ids:
            return
        try:
            wanted = [UUID(str(i)) for i in ids]
        except ValueError:
            log.warning("router.bad_event", event_id=event.id)
            return
        cancelled = await DeliveryAttempt.filter(
            notification_id__in=wanted, status=DeliveryStatus.PENDING
        ).update(status=DeliveryStatus.CANCELLED, last_error="read")
        if cancelled:
            log.info("router.cancelled", attempts=cancelled)

    async def on_created(self, event: Event) -> None:
        try:
            view = notification_from_event(event)
        except (KeyError, ValueError):
            log.warning("router.bad_event", event_id=event.id)
            return
        if not await self._claims.first(f"route:{view.id}"):
            return  # another node routes this one
        if (await self._presence.get(str(view.user_id))).online:
            return  # the socket event reached them
        preferences = await load_preferences(view.user_id)
        if not preferences.allows(view.type, Channel.WEB_PUSH):
            log.info("router.push_off", notification=str(view.id))
        elif preferences.quiet_until(utcnow()) is not None:
            log.info("router.push_quiet", notification=str(view.id))
        else:
            outcomes = await self._push.send_to_user(view.user_id, view)
            log.info("router.pushed", notification=str(view.id), subscriptions=len(outcomes))
        if self._email is not None and preferences.allows(view.type, Channel.EMAIL):
            attempt = await self._email.schedule_notification(view, preferences)
            log.info(
                "router.mail_scheduled",
                notification=str(view.id),
                due=attempt.next_attempt_at.isoformat() if attempt.next_attempt_at else None,
            )
