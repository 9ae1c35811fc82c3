"""The mail queue: rows in the database, polled by a background task in every hub process.

Two stages, both claimed with conditional updates so several hub processes never do the same
work twice, and both surviving a restart (nothing lives only in memory):

1. Notification mails wait as `DeliveryAttempt` rows (channel `email`, `pending`, due at
   `next_attempt_at`: the notification's time plus NOTIFICATION_EMAIL_DELAY_SECONDS, moved past
   quiet hours). Reading the notification cancels the row (the router's `on_read`). When due,
   a process claims it (`next_attempt_at` set to NULL) and turns it into an `EmailMessage`;
   for a user with a digest, every other pending notification mail of theirs joins it.
2. `EmailMessage` rows `queued` and due are claimed (`sending`, attempts + 1, a lease in
   `claimed_until` after which another process may take over a crashed try) and sent.
   Success: `sent`. A retryable failure (4xx, lost connection): `queued` again after
   exponential backoff with jitter, until EMAIL_MAX_ATTEMPTS, then `dead` (the dead letters,
   kept for inspection and `requeue`). A permanent failure (5xx): `failed`, and a 550 puts the
   address on the suppression list. Suppressed addresses are never mailed (`suppressed`).
   Each recipient domain has a send rate (EMAIL_DOMAIN_RATE_PER_MINUTE); a mail over it waits
   without using up a try. The notification's `DeliveryAttempt` rows follow every try.

A notification mail is sent only if at least one of its notifications is still unread when
its turn comes, so a read in any channel also cancels a mail already composed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from jinja2 import TemplateError
from redis.exceptions import RedisError
from tortoise.exceptions import BaseORMException
from tortoise.expressions import Q

from core.clock import utcnow
from core.logs import get_logger
from core.mail import MailDeliveryError, Mailer
from core.rate_limit import Limit, RateLimiter
from db.models.chat import Notification
from db.models.email import EmailMessage, EmailStatus
from db.models.identity import User
from db.models.push import DeliveryAttempt, DeliveryChannel, DeliveryStatus
from hub.email.composer import MailComposer
from hub.email.loader import TEMPLATES, template_for_type
from hub.email.suppression import (
    EVERYTHING,
    NOTIFICATIONS_SCOPE,
    SuppressionReason,
    is_suppressed,
    normalize_address,
    suppress,
)
from hub.email.variants import assign_variant
from hub.notify import NotificationView
from hub.preferences import DEFAULT_LOCALE, Preferences, load_preferences

log = get_logger(__name__)

LEASE_SECONDS = 120.0
BATCH = 50
HARD_BOUNCE_CODES = frozenset({550, 551, 553})


@dataclass(frozen=True, slots=True)
class MailPolicy:
    max_attempts: int = 6
    base_delay: float = 30.0  # before the second try; doubles for each try after
    max_delay: float = 3600.0

    def delay(self, attempts: int) -> float:
        step = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempts - 1))
        return step * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


@dataclass(slots=True)
class RunReport:
    composed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    failed: int = 0
    suppressed: int = 0
    cancelled: int = 0
    deferred: int = 0
    message_ids: list[UUID] = field(default_factory=list)


class EmailQueue:
    def __init__(
        self,
        *,
        mailer: Mailer,
        composer: MailComposer,
        limiter: RateLimiter,
        policy: MailPolicy,
        notification_delay: float,
        domain_limit: Limit,
        poll_seconds: float,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.mailer = mailer
        self.composer = composer
        self.limiter = limiter
        self.policy = policy
        self.notification_delay = notification_delay
        self.domain_limit = domain_limit
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one pass at a time in this process

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll (something became due)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except (BaseORMException, OSError, RedisError) as exc:  # the next poll retries
                log.warning("email.queue_failed", error=type(exc).__name__)
            except Exception:  # a bug must not stop the mail: logged, and the loop goes on
                log.exception("email.queue_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    # -- putting mail in ---------------------------------------------------------------------

    async def enqueue(
        self,
        *,
        to: str,
        template: str,
        context: Mapping[str, Any],
        user_id: UUID | None = None,
        category: str = "",
        locale: str | None = None,
        notification_ids: Sequence[UUID] = (),
        due: datetime | None = None,
    ) -> EmailMessage:
        """Queue one mail (call after the transaction that made its data has committed).
        `category` is the notification type (or `notifications` for a digest): it makes the
        mail unsubscribable and tracked; transactional mails leave it empty."""
        if template not in TEMPLATES:
            raise KeyError(template)
        if locale is None:
            locale = (
                (await load_preferences(user_id)).locale if user_id is not None else DEFAULT_LOCALE
            )
        variant = await assign_variant(
            user_id=user_id, template=template, variants=self.composer.templates.variants(template)
        )
        row = await EmailMessage.create(
            user_id=user_id,
            to_address=normalize_address(to),
            template=template,
            category=category,
            locale=locale,
            variant=variant,
            context=dict(context),
            notification_ids=[str(i) for i in notification_ids],
            next_attempt_at=due or utcnow(),
        )
        self.wake()
        return row

    async def schedule_notification(
        self, view: NotificationView, preferences: Preferences, *, now: datetime | None = None
    ) -> DeliveryAttempt:
        """The notification will be mailed when due, unless read before (router, on create)."""
        due = preferences.email_due(now or utcnow(), delay=self.notification_delay)
        attempt = await DeliveryAttempt.create(
            notification_id=view.id,
            user_id=view.user_id,
            channel=DeliveryChannel.EMAIL,
            next_attempt_at=due,
        )
        if due <= utcnow():
            self.wake()
        return attempt

    async def requeue_dead(self, message_id: UUID) -> bool:
        """Give a dead letter a fresh set of tries (operators, after fixing the cause)."""
        count = await EmailMessage.filter(id=message_id, status=EmailStatus.DEAD).update(
            status=EmailStatus.QUEUED, attempts=0, next_attempt_at=utcnow(), last_error=""
        )
        self.wake()
        return bool(count)

    # -- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> RunReport:
        """Compose the notification mails that are due, then send the mails that are due."""
        report = RunReport()
        async with self._lock:
            await self._compose_due(report)
            await self._send_due(report)
        return report

    async def _claim_attempt(self, attempt_id: UUID) -> bool:
        claimed: int = await DeliveryAttempt.filter(
            id=attempt_id,
            channel=DeliveryChannel.EMAIL,
            status=DeliveryStatus.PENDING,
            next_attempt_at__isnull=False,
        ).update(next_attempt_at=None)
        return claimed == 1

    async def _compose_due(self, report: RunReport) -> None:
        now = utcnow()
        due = (
            await DeliveryAttempt.filter(
                channel=DeliveryChannel.EMAIL,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=now,
            )
            .order_by("next_attempt_at")
            .limit(BATCH)
        )
        for attempt in due:
            if not await self._claim_attempt(attempt.id):
                continue  # another process has it
            user_id: UUID = attempt.user_id  # type: ignore[attr-defined]
            preferences = await load_preferences(user_id)
            claimed = [attempt]
            if preferences.digest_minutes > 0:
                others = await DeliveryAttempt.filter(
                    user_id=user_id,
                    channel=DeliveryChannel.EMAIL,
                    status=DeliveryStatus.PENDING,
                    next_attempt_at__isnull=False,
                ).order_by("created_at")
                claimed += [o for o in others if await self._claim_attempt(o.id)]
            if await self._compose(claimed, preferences):
                report.composed += 1

    async def _compose(self, attempts: list[DeliveryAttempt], preferences: Preferences) -> bool:
        ids = [a.notification_id for a in attempts]  # type: ignore[attr-defined]
        notifications = await Notification.filter(id__in=ids).order_by("id")
        unread = [n for n in notifications if n.read_at is None]
        unread_ids = {n.id for n in unread}
        settled = [a.id for a in attempts if a.notification_id not in unread_ids]  # type: ignore[attr-defined]
        if settled:
            await DeliveryAttempt.filter(id__in=settled, status=DeliveryStatus.PENDING).update(
                status=DeliveryStatus.CANCELLED, last_error="read"
            )
        if not unread:
            return False
        user = await User.get_or_none(id=preferences.user_id)
        live = [a.id for a in attempts if a.id not in settled]
        if user is None or not user.is_active:
            await DeliveryAttempt.filter(id__in=live).update(
                status=DeliveryStatus.FAILED, last_error="no_recipient"
            )
            return False
        links = self.composer.links
        views = [NotificationView.of(n) for n in unread]
        if len(views) == 1:
            view = views[0]
            template, category = template_for_type(view.type), view.type
            context: dict[str, Any] = {
                "title": view.title,
                "body": view.body,
                "link_url": links.absolute(view.link or "/"),
            }
        else:
            template, category = "digest", NOTIFICATIONS_SCOPE
            items = [
                {"title": v.title, "body": v.body, "link_url": links.absolute(v.link or "/")}
                for v in views
            ]
            context = {"items": items}
        context["name"] = user.display_name
        await self.enqueue(
            to=user.email,
            template=template,
            context=context,
            user_id=user.id,
            category=category,
            locale=preferences.locale,
            notification_ids=[v.id for v in views],
        )
        return True

    async def _send_due(self, report: RunReport) -> None:
        now = utcnow()
        rows = (
            await EmailMessage.filter(
                Q(status=EmailStatus.QUEUED, next_attempt_at__lte=now)
                | Q(status=EmailStatus.SENDING, claimed_until__lt=now)
            )
            .order_by("next_attempt_at")
            .limit(BATCH)
        )
        for row in rows:
            claimed = await EmailMessage.filter(
                id=row.id, status=row.status, attempts=row.attempts
            ).update(
                status=EmailStatus.SENDING,
                attempts=row.attempts + 1,
                claimed_until=now + timedelta(seconds=self.lease_seconds),
            )
            if claimed:
                await self._deliver(row, attempts=row.attempts + 1, report=report)

    async def _settle(
        self,
        row: EmailMessage,
        *,
        status: EmailStatus,
        attempts: int,
        error: str = "",
        next_attempt_at: datetime | None = None,
        **extra: Any,
    ) -> None:
        if row.notification_ids:
            await self._settle_attempts(row, status=status, attempts=attempts, error=error)
        # The mail's own row last: once it shows the outcome, its attempts do too.
        await EmailMessage.filter(id=row.id).update(
            status=status,
            attempts=attempts,
            last_error=error[:500],
            next_attempt_at=next_attempt_at,
            claimed_until=None,
            **extra,
        )

    async def _settle_attempts(
        self, row: EmailMessage, *, status: EmailStatus, attempts: int, error: str
    ) -> None:
        attempt_status = {
            EmailStatus.SENT: DeliveryStatus.SENT,
            EmailStatus.QUEUED: DeliveryStatus.PENDING,
            EmailStatus.FAILED: DeliveryStatus.FAILED,
            EmailStatus.SUPPRESSED: DeliveryStatus.FAILED,
            EmailStatus.DEAD: DeliveryStatus.DEAD,
            EmailStatus.CANCELLED: DeliveryStatus.CANCELLED,
        }[status]
        # The notification's attempt rows: pending ones handed to this mail (due time NULL).
        await DeliveryAttempt.filter(
            notification_id__in=[UUID(i) for i in row.notification_ids],
            channel=DeliveryChannel.EMAIL,
            status=DeliveryStatus.PENDING,
            next_attempt_at__isnull=True,
        ).update(status=attempt_status, attempts=attempts, last_error=error[:500])

    async def _deliver(self, row: EmailMessage, *, attempts: int, report: RunReport) -> None:
        if row.notification_ids:
            ids = [UUID(i) for i in row.notification_ids]
            if not await Notification.filter(id__in=ids, read_at__isnull=True).exists():
                await self._settle(
                    row, status=EmailStatus.CANCELLED, attempts=attempts - 1, error="read"
                )
                report.cancelled += 1
                return
        if await is_suppressed(row.to_address, category=row.category):
            await self._settle(
                row, status=EmailStatus.SUPPRESSED, attempts=attempts - 1, error="suppressed"
            )
            report.suppressed += 1
            return
        domain = row.to_address.rpartition("@")[2]
        decision = await self.limiter.hit(f"email:domain:{domain}", self.domain_limit)
        if not decision.allowed:
            await self._settle(
                row,
                status=EmailStatus.QUEUED,
                attempts=attempts - 1,  # waiting for the rate is not a try
                error="rate_limited",
                next_attempt_at=utcnow() + timedelta(seconds=max(decision.retry_after, 0.05)),
            )
            report.deferred += 1
            return
        try:
            outgoing = self.composer.compose(row)
        except (KeyError, TemplateError, ValueError) as exc:
            log.error("email.compose_failed", message=str(row.id), error=type(exc).__name__)
            await self._settle(row, status=EmailStatus.FAILED, attempts=attempts, error="template")
            report.failed += 1
            return
        try:
            message_id = await self.mailer.send(outgoing)
        except MailDeliveryError as exc:
            await self._failed(row, exc, attempts=attempts, report=report)
            return
        await self._settle(
            row,
            status=EmailStatus.SENT,
            attempts=attempts,
            sent_at=utcnow(),
            smtp_message_id=message_id[:300],
        )
        report.sent += 1
        report.message_ids.append(row.id)

    async def _failed(
        self, row: EmailMessage, exc: MailDeliveryError, *, attempts: int, report: RunReport
    ) -> None:
        error = str(exc)
        if not exc.retryable:
            if exc.smtp_code in HARD_BOUNCE_CODES:
                await suppress(
                    row.to_address,
                    scope=EVERYTHING,
                    reason=SuppressionReason.HARD_BOUNCE,
                    detail=error,
                )
            await self._settle(row, status=EmailStatus.FAILED, attempts=attempts, error=error)
            report.failed += 1
            return
        if attempts >= self.policy.max_attempts:
            await self._settle(row, status=EmailStatus.DEAD, attempts=attempts, error=error)
            log.warning("email.dead_letter", message=str(row.id), error=error)
            report.dead += 1
            return
        delay = self.policy.delay(attempts)
        await self._settle(
            row,
            status=EmailStatus.QUEUED,
            attempts=attempts,
            error=error,
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )
        report.retried += 1
