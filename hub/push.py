"""Web push (RFC 8030, encrypted per RFC 8291 with aes128gcm, signed with VAPID per RFC 8292).

- `load_vapid_keys(settings)`: `VAPID_PRIVATE_KEY` when set, else a P-256 key generated once
  and kept in `DATA_DIR/vapid_private_key.pem` (0600, put in place with an atomic link so
  every process of one machine ends up with the same key). The private key is never logged,
  printed or put in a repr. `VapidKeys.application_server_key` is what the browser's
  `pushManager.subscribe({applicationServerKey})` wants.
- `register_subscription` / `remove_subscription`: a browser's PushSubscription, checked
  (`check_subscription`) and bound to the signed-in user, idempotent on the endpoint.
- `WebPushSender.send_to_user(user_id, view)`: one `DeliveryAttempt` row per subscription,
  updated by every try. 201 = `sent`. 404/410 = `gone` (the subscription is deleted). 429,
  5xx and network errors are retried with exponential backoff and jitter (never sooner than
  the push service's Retry-After), up to `PUSH_MAX_ATTEMPTS`, then `dead`. Anything else is
  `failed`. A payload over `MAX_PLAINTEXT_BYTES` is refused before any request.

Retries go through a `RetryScheduler`. The default, `AsyncioRetryScheduler`, keeps asyncio
tasks in this process (embedded mode, and the default in production for now); since the
attempt row holds everything a retry needs, a Celery scheduler can take over in production by
implementing the same two methods (`apply_async(countdown=delay)` of a task that calls
`WebPushSender.retry(attempt_id)`). A retry claims its row with a conditional update, so two
nodes never send the same try twice. `resume_pending()` reschedules what a stopped process
left waiting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import ipaddress
import json
import os
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async
from tortoise.exceptions import BaseORMException, IntegrityError
from tortoise.expressions import F

from core.clock import utcnow
from core.errors import ConfigError, NotFound, ValidationFailed
from core.logs import get_logger
from core.settings import Settings, is_loopback_host
from db.models.chat import Notification
from db.models.push import DeliveryAttempt, DeliveryChannel, DeliveryStatus, PushSubscription
from hub.notify import NotificationView

log = get_logger(__name__)

KEY_FILE = "vapid_private_key.pem"
# 4,096 bytes per record minus the aes128gcm header (86), the AEAD tag (16) and the padding
# delimiter (1): the largest plaintext a push service must accept.
MAX_PLAINTEXT_BYTES = 3993
MAX_TOPIC_CHARS = 32
REQUEST_TIMEOUT = 10.0
DAY = 24 * 3600


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- VAPID keys ---------------------------------------------------------------------------------


class VapidKeys:
    """The application server's P-256 key pair. Its repr never shows the private half."""

    __slots__ = ("_private",)

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("VAPID keys are P-256")
        self._private = private_key

    @property
    def application_server_key(self) -> str:
        """The public key as an uncompressed point in base64url (what browsers take)."""
        point = self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return _b64url(point)

    def signer(self) -> Vapid:
        return Vapid(self._private)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"VapidKeys(public={self.application_server_key})"


def parse_vapid_private_key(text: str) -> VapidKeys:
    """A PEM private key, or the 32-byte private scalar in base64url. Errors name the setting,
    never the value."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            raw = _b64url_decode(text)
            if len(raw) != 32:
                raise ValueError("not 32 bytes")
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an elliptic curve key")
        return VapidKeys(key)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise ConfigError(
            "VAPID_PRIVATE_KEY: not a P-256 private key (PEM or base64url raw)",
            setting="VAPID_PRIVATE_KEY",
        ) from None


def load_vapid_keys(settings: Settings) -> VapidKeys:
    if settings.vapid_private_key is not None:
        return parse_vapid_private_key(settings.vapid_private_key.get_secret_value())
    return _load_or_create(settings.data_dir / KEY_FILE)


def _load_or_create(path: Path) -> VapidKeys:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # As core.secret_key: write a private temporary file, then hard-link it into place.
        # The link fails if another process got there first, and everyone reads the winner.
        generated = VapidKeys(ec.generate_private_key(ec.SECP256R1()))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(generated.private_pem())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            log.info("push.vapid_key_generated", path=str(path))
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        return parse_vapid_private_key(path.read_text(encoding="ascii"))
    except ConfigError:
        raise ConfigError(
            f"VAPID_PRIVATE_KEY: {path} holds no usable key (delete it to generate a new one)",
            setting="VAPID_PRIVATE_KEY",
        ) from None


# -- subscriptions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: UUID
    endpoint: str
    created: bool


def check_subscription(*, endpoint: str, p256dh: str, auth: str) -> None:
    """A browser's PushSubscription: an https endpoint on a public host (plain http and
    loopback only for local test services) and keys that decode to a P-256 point and 16
    bytes. Raises `ValidationFailed` with `invalid_push_endpoint` or `invalid_push_keys`."""
    _check_endpoint(endpoint)
    try:
        point = _b64url_decode(p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        secret = _b64url_decode(auth)
    except (ValueError, TypeError):
        point, secret = b"", b""
    if len(point) != 65 or len(secret) != 16:
        raise ValidationFailed(
            "invalid_push_keys",
            "keys.p256dh must be an uncompressed P-256 point and keys.auth 16 bytes (base64url)",
        )


def _check_endpoint(endpoint: str) -> None:
    refused = ValidationFailed(
        "invalid_push_endpoint", "The endpoint must be an https URL of a push service"
    )
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise refused from None
    if not host or parts.username or parts.password or len(endpoint) > 2000:
        raise refused
    loopback = is_loopback_host(host)
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise refused
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not (address.is_global or loopback):
        raise refused  # private networks are never a push service


async def register_subscription(
    *, user_id: UUID, endpoint: str, p256dh: str, auth: str, user_agent: str = ""
) -> SubscriptionView:
    """Store the subscription for `user_id`; the same endpoint again updates its keys and
    moves it to this user (a browser profile signed in as someone else)."""
    check_subscription(endpoint=endpoint, p256dh=p256dh, auth=auth)
    values: dict[str, Any] = {
        "user_id": user_id,
        "p256dh": p256dh,
        "auth": auth,
        "user_agent": user_agent[:300],
        "failure_count": 0,
    }
    created = False
    if not await PushSubscription.filter(endpoint=endpoint).update(**values):
        try:
            await PushSubscription.create(endpoint=endpoint, **values)
            created = True
        except IntegrityError:  # another request stored the same endpoint meanwhile
            await PushSubscription.filter(endpoint=endpoint).update(**values)
    row = await PushSubscription.get(endpoint=endpoint)
    return SubscriptionView(id=row.id, endpoint=row.endpoint, created=created)


async def remove_subscription(*, user_id: UUID, endpoint: str) -> None:
    deleted: int = await PushSubscription.filter(user_id=user_id, endpoint=endpoint).delete()
    if not deleted:
        raise NotFound("push_subscription_not_found", "No such push subscription")


# -- what a push says, and how ------------------------------------------------------------------


class Urgency(StrEnum):
    VERY_LOW = "very-low"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class PushOptions:
    ttl: int  # seconds the push service keeps it for an offline browser
    urgency: Urgency
    topic: str | None = None  # a newer push with the same topic replaces an undelivered one


def conversation_topic(conversation_id: str) -> str:
    """`conv-` and a hash: 32 URL-safe characters, the most a Topic header may have."""
    digest = _b64url(hashlib.sha256(conversation_id.encode()).digest())
    return f"conv-{digest}"[:MAX_TOPIC_CHARS]


def push_options_for(view: NotificationView) -> PushOptions:
    if view.type.startswith("chat."):
        conversation_id = view.data.get("conversation_id")
        topic = conversation_topic(str(conversation_id)) if conversation_id else None
        return PushOptions(ttl=DAY, urgency=Urgency.HIGH, topic=topic)
    if view.type.startswith("security."):
        return PushOptions(ttl=3600, urgency=Urgency.HIGH)
    if view.type.startswith(("render.", "file.")):
        return PushOptions(ttl=DAY, urgency=Urgency.NORMAL)
    return PushOptions(ttl=7 * DAY, urgency=Urgency.LOW)


def push_payload(view: NotificationView) -> bytes:
    """The JSON the service worker receives (compact UTF-8)."""
    return json.dumps(view.wire(), separators=(",", ":"), ensure_ascii=False).encode()


# -- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 2.0  # seconds before the second try, doubling for each one after
    max_delay: float = 600.0
    max_retry_after: float = float(DAY)  # a longer Retry-After is capped here

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (50-100% of the step), never below Retry-After."""
        step = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempts - 1))
        backoff = step * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
        if retry_after is not None:
            return max(backoff, min(retry_after, self.max_retry_after))
        return backoff


class RetryScheduler(Protocol):
    """Runs `WebPushSender.retry(attempt_id)` after `delay` seconds, somewhere.

    The in-process `AsyncioRetryScheduler` is the default. A Celery implementation would
    `apply_async((str(attempt_id),), countdown=delay)` a task that calls the sender's retry.
    """

    def schedule(self, attempt_id: UUID, delay: float) -> None: ...

    async def close(self) -> None: ...


RESUME_GRACE = 5.0  # seconds close() waits for the start-up resume to finish


class AsyncioRetryScheduler:
    """Retries as asyncio tasks of this process: kept, and cancelled by `close()` (the rows
    stay `pending` with `next_attempt_at`, for `resume_pending()` at the next start)."""

    def __init__(self, run: Callable[[UUID], Awaitable[object]]) -> None:
        self._run = run
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, attempt_id: UUID, delay: float) -> None:
        self._spawn(self._later(attempt_id, delay))

    async def _later(self, attempt_id: UUID, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._run(attempt_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # a retry's crash is logged, never lost silently
            log.exception("push.retry_failed", attempt_id=str(attempt_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until no retry is scheduled (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- the sender ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushOutcome:
    attempt_id: UUID
    subscription_id: UUID | None
    status: DeliveryStatus
    attempts: int
    error: str = ""  # a stable code: payload_too_large, http_410, http_429, network, ...


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


class WebPushSender:
    def __init__(
        self,
        *,
        keys: VapidKeys,
        subject: str,
        policy: RetryPolicy,
        session: aiohttp.ClientSession | None = None,
        scheduler: RetryScheduler | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """Start inside the running loop. Without `session` the sender opens its own HTTP
        session and `close()` closes it. Without `scheduler` retries are asyncio tasks."""
        self.keys = keys
        self._signer = keys.signer()
        self._subject = subject
        self.policy = policy
        self._owns_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout)
        )
        self._timeout = timeout
        self.scheduler: RetryScheduler = scheduler or AsyncioRetryScheduler(self.retry)
        self._resuming: asyncio.Task[None] | None = None

    @property
    def application_server_key(self) -> str:
        return self.keys.application_server_key

    def start(self) -> None:
        """Resume what a stopped process left pending, in the background: a database that is
        not ready (yet) must not stop the app from starting and reporting itself not ready."""
        self._resuming = asyncio.create_task(self._resume_quietly())

    async def _resume_quietly(self) -> None:
        try:
            count = await self.resume_pending()
        except BaseORMException as exc:  # no schema yet, database away: /readyz tells
            log.warning("push.resume_failed", error=type(exc).__name__)
            return
        except Exception:  # best effort at start-up: logged, never raised
            log.exception("push.resume_crashed")
            return
        if count:
            log.info("push.resumed", count=count)

    async def close(self) -> None:
        try:
            if self._resuming is not None:
                # Let the (short) resume query finish rather than cancel it mid-flight: a
                # cancelled aiosqlite call still completes in its thread, after the loop may
                # be gone. Only a resume stuck on an unreachable database is cancelled.
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._resuming), RESUME_GRACE)
                if not self._resuming.done():
                    self._resuming.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._resuming
            await self.scheduler.close()
        finally:
            if self._owns_session:
                await self._session.close()

    async def send_to_user(self, user_id: UUID, view: NotificationView) -> list[PushOutcome]:
        """Push `view` to each of the user's subscriptions; one outcome per subscription."""
        subscriptions = await PushSubscription.filter(user_id=user_id).order_by("created_at")
        if not subscriptions:
            return []
        payload = push_payload(view)
        if len(payload) > MAX_PLAINTEXT_BYTES:
            log.warning("push.payload_too_large", size=len(payload), notification=str(view.id))
            return [await self._refuse(s, view, "payload_too_large") for s in subscriptions]
        options = push_options_for(view)
        # Due now: were this process to stop before the first try, resume_pending() finds it.
        attempts = [
            await DeliveryAttempt.create(
                notification_id=view.id,
                user_id=user_id,
                subscription=s,
                channel=DeliveryChannel.WEB_PUSH,
                next_attempt_at=utcnow(),
            )
            for s in subscriptions
        ]
        outcomes = await asyncio.gather(
            *(
                self._try(a, s, payload, options, previous=0)
                for a, s in zip(attempts, subscriptions, strict=True)
            )
        )
        return [outcome for outcome in outcomes if outcome is not None]

    async def retry(self, attempt_id: UUID) -> PushOutcome | None:
        """The next try of a pending attempt (called by the scheduler). None when there is
        nothing left to do: the attempt is settled, or its subscription or notification gone."""
        attempt = await DeliveryAttempt.get_or_none(id=attempt_id)
        if attempt is None or attempt.status is not DeliveryStatus.PENDING:
            return None
        subscription_id = attempt.subscription_id  # type: ignore[attr-defined]
        notification_id = attempt.notification_id  # type: ignore[attr-defined]
        subscription = await PushSubscription.get_or_none(id=subscription_id)
        notification = await Notification.get_or_none(id=notification_id)
        if subscription is None or notification is None:
            await DeliveryAttempt.filter(id=attempt_id, status=DeliveryStatus.PENDING).update(
                status=DeliveryStatus.FAILED, next_attempt_at=None, last_error="target_gone"
            )
            return None
        view = NotificationView.of(notification)
        payload = push_payload(view)
        return await self._try(
            attempt, subscription, payload, push_options_for(view), previous=attempt.attempts
        )

    async def resume_pending(self) -> int:
        """Schedule the retries a stopped process left waiting; returns how many."""
        rows = await DeliveryAttempt.filter(
            channel=DeliveryChannel.WEB_PUSH,
            status=DeliveryStatus.PENDING,
            next_attempt_at__isnull=False,
        ).only("id", "next_attempt_at")
        now = utcnow()
        for row in rows:
            due = row.next_attempt_at or now
            self.scheduler.schedule(row.id, max(0.0, (due - now).total_seconds()))
        return len(rows)

    async def _refuse(
        self, subscription: PushSubscription, view: NotificationView, error: str
    ) -> PushOutcome:
        attempt = await DeliveryAttempt.create(
            notification_id=view.id,
            user_id=view.user_id,
            subscription=subscription,
            channel=DeliveryChannel.WEB_PUSH,
            status=DeliveryStatus.FAILED,
            last_error=error,
        )
        return PushOutcome(attempt.id, subscription.id, DeliveryStatus.FAILED, 0, error)

    async def _try(
        self,
        attempt: DeliveryAttempt,
        subscription: PushSubscription,
        payload: bytes,
        options: PushOptions,
        *,
        previous: int,
    ) -> PushOutcome | None:
        attempts = previous + 1
        # Claim this try: only the caller that moves the counter on sends (one node, once).
        claimed = await DeliveryAttempt.filter(
            id=attempt.id, status=DeliveryStatus.PENDING, attempts=previous
        ).update(attempts=attempts, next_attempt_at=None)
        if not claimed:
            return None
        status_code, retry_after, error = await self._post(subscription, payload, options)
        now = utcnow()
        if error == "":
            await DeliveryAttempt.filter(id=attempt.id).update(
                status=DeliveryStatus.SENT, last_error=""
            )
            await PushSubscription.filter(id=subscription.id).update(
                last_success_at=now, failure_count=0
            )
            return PushOutcome(attempt.id, subscription.id, DeliveryStatus.SENT, attempts)
        if status_code in (404, 410):
            await DeliveryAttempt.filter(id=attempt.id).update(
                status=DeliveryStatus.GONE, last_error=error
            )
            await PushSubscription.filter(id=subscription.id).delete()
            log.info("push.subscription_gone", subscription=str(subscription.id))
            return PushOutcome(attempt.id, subscription.id, DeliveryStatus.GONE, attempts, error)
        await PushSubscription.filter(id=subscription.id).update(
            failure_count=F("failure_count") + 1
        )
        retryable = status_code is None or status_code == 429 or status_code >= 500
        if not retryable:
            status = DeliveryStatus.FAILED
        elif attempts >= self.policy.max_attempts:
            status = DeliveryStatus.DEAD
        else:
            delay = self.policy.delay(attempts, retry_after)
            await DeliveryAttempt.filter(id=attempt.id).update(
                last_error=error, next_attempt_at=now + timedelta(seconds=delay)
            )
            self.scheduler.schedule(attempt.id, delay)
            return PushOutcome(attempt.id, subscription.id, DeliveryStatus.PENDING, attempts, error)
        await DeliveryAttempt.filter(id=attempt.id).update(status=status, last_error=error)
        log.warning("push.undelivered", attempt=str(attempt.id), status=status, error=error)
        return PushOutcome(attempt.id, subscription.id, status, attempts, error)

    async def _post(
        self, subscription: PushSubscription, payload: bytes, options: PushOptions
    ) -> tuple[int | None, float | None, str]:
        """One request: (HTTP status or None, Retry-After seconds, error code or "")."""
        headers: dict[str, str | int | float] = {"Urgency": options.urgency.value}
        if options.topic:
            headers["Topic"] = options.topic
        info: dict[str, str | bytes | dict[str, str | bytes]] = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        try:
            await webpush_async(
                subscription_info=info,
                data=payload.decode(),
                vapid_private_key=self._signer,
                vapid_claims={"sub": self._subject},  # fresh each call: aud and exp go in
                content_encoding="aes128gcm",
                ttl=options.ttl,
                headers=headers,
                timeout=self._timeout,
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            code = exc.status_code
            if code is None:
                return None, None, "push_refused"
            return code, _retry_after_seconds(exc.retry_after), f"http_{code}"
        except (aiohttp.ClientError, TimeoutError):
            return None, None, "network"
        return 201, None, ""


def create_web_push(settings: Settings) -> WebPushSender:
    """The sender the app runs with (in-process retries); close it with `close()`."""
    return WebPushSender(
        keys=load_vapid_keys(settings),
        subject=settings.vapid_subject,
        policy=RetryPolicy(max_attempts=settings.push_max_attempts),
    )
