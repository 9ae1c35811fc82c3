"""Notification preferences: which channel each notification type may use, quiet hours, the
email digest and the user's locale.

Channels: `in_app` (the live socket event; the inbox row is written whatever the choice, since
the inbox is the log `sync` replays), `web_push` and `email`. Each type has defaults
(`TYPE_DEFAULTS`, with `FALLBACK` for types not listed); a user's row stores only the choices
that differ from them, so a changed default reaches everyone who never touched it.

Quiet hours are a local time window (`22:00`-`07:00` crosses midnight) in the user's IANA time
zone. Decided: during quiet hours web push is SKIPPED (a push is a buzz now; the inbox keeps
the notification, and a burst of stale pushes at 07:00 helps no one) and email WAITS: a mail
that falls due inside the window is sent when the window ends (still only if unread).

Digest: with `digest_minutes` > 0, the first notification mail of a user opens a window of that
length; every notification mail falling due for them until it closes is sent in ONE mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.errors import ValidationFailed
from db.models.email import NotificationPreference

LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"
MAX_DIGEST_MINUTES = 24 * 60


class Channel(StrEnum):
    IN_APP = "in_app"
    WEB_PUSH = "web_push"
    EMAIL = "email"


CHANNEL_NAMES = frozenset(c.value for c in Channel)


def _choice(in_app: bool, web_push: bool, email: bool) -> dict[Channel, bool]:
    return {Channel.IN_APP: in_app, Channel.WEB_PUSH: web_push, Channel.EMAIL: email}


# The types users can tune, with their defaults (in_app, web_push, email).
TYPE_DEFAULTS: dict[str, dict[Channel, bool]] = {
    "chat.new_message": _choice(True, True, True),
    "render.completed": _choice(True, True, True),
    "render.failed": _choice(True, True, True),
    "file.shared": _choice(True, True, True),
    "order.updated": _choice(True, True, True),
    "order.paid": _choice(True, True, True),
    "order.shipped": _choice(True, True, True),
    "order.refunded": _choice(True, True, True),
    "subscription.payment_failed": _choice(True, True, True),
    "security.event": _choice(True, True, False),
    "inventory.low_stock": _choice(True, True, True),
}
FALLBACK = _choice(True, True, False)


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight

    def wire(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M")}


@dataclass(frozen=True, slots=True)
class Preferences:
    user_id: UUID
    overrides: dict[str, dict[Channel, bool]] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    timezone: str = "UTC"
    digest_minutes: int = 0
    locale: str = DEFAULT_LOCALE

    def allows(self, type: str, channel: Channel) -> bool:
        chosen = self.overrides.get(type, {}).get(channel)
        if chosen is not None:
            return chosen
        return TYPE_DEFAULTS.get(type, FALLBACK)[channel]

    def channels_of(self, type: str) -> dict[Channel, bool]:
        return {channel: self.allows(type, channel) for channel in Channel}

    def quiet_until(self, now: datetime) -> datetime | None:
        """When `now` (aware) lies in quiet hours: the moment they end (UTC); else None."""
        if self.quiet_hours is None:
            return None
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        if not self.quiet_hours.contains(local.time().replace(tzinfo=None)):
            return None
        end = datetime.combine(local.date(), self.quiet_hours.end, tzinfo=zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.quiet_hours.end, zone)
        return end.astimezone(now.tzinfo)

    def email_due(self, now: datetime, *, delay: float) -> datetime:
        """When a notification made at `now` is mailed if still unread: after the delay (or
        the digest window, if longer), moved to the end of quiet hours if it falls in them."""
        due = now + timedelta(seconds=max(delay, self.digest_minutes * 60.0))
        return self.quiet_until(due) or due


def _parse_time(value: str, what: str) -> time:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise ValidationFailed("invalid_quiet_hours", f"{what} must be HH:MM") from None
    if len(value) != 5 or parsed.second or parsed.tzinfo is not None:
        raise ValidationFailed("invalid_quiet_hours", f"{what} must be HH:MM")
    return parsed


def _overrides_of(row: NotificationPreference) -> dict[str, dict[Channel, bool]]:
    out: dict[str, dict[Channel, bool]] = {}
    for type, choices in dict(row.channels).items():
        known = {Channel(c): bool(v) for c, v in choices.items() if c in CHANNEL_NAMES}
        if known:
            out[type] = known
    return out


def preferences_of(row: NotificationPreference | None, user_id: UUID) -> Preferences:
    if row is None:
        return Preferences(user_id=user_id)
    quiet = None
    if row.quiet_start and row.quiet_end:
        quiet = QuietHours(time.fromisoformat(row.quiet_start), time.fromisoformat(row.quiet_end))
    return Preferences(
        user_id=user_id,
        overrides=_overrides_of(row),
        quiet_hours=quiet,
        timezone=row.timezone,
        digest_minutes=row.digest_minutes,
        locale=row.locale,
    )


async def load_preferences(user_id: UUID) -> Preferences:
    row = await NotificationPreference.get_or_none(user_id=user_id)
    return preferences_of(row, user_id)


@dataclass(frozen=True, slots=True)
class PreferencesUpdate:
    """A whole preferences document (PUT replaces): channel choices per type (only the types
    given; others keep their defaults), quiet hours (None = none), zone, digest, locale."""

    channels: Mapping[str, Mapping[str, bool]]
    quiet_start: str | None = None
    quiet_end: str | None = None
    timezone: str = "UTC"
    digest_minutes: int = 0
    locale: str = DEFAULT_LOCALE


def check_update(update: PreferencesUpdate) -> dict[str, Any]:
    """Validate; return the row's column values (`channels` keeps only non-default choices)."""
    channels: dict[str, dict[str, bool]] = {}
    for type, choices in update.channels.items():
        if type not in TYPE_DEFAULTS:
            raise ValidationFailed(
                "unknown_notification_type",
                f"No notification type {type!r}",
                details={"type": type},
            )
        for name, value in choices.items():
            if name not in CHANNEL_NAMES:
                raise ValidationFailed(
                    "unknown_channel", f"No channel {name!r}", details={"channel": name}
                )
            if TYPE_DEFAULTS[type][Channel(name)] != value:
                channels.setdefault(type, {})[name] = bool(value)
    if (update.quiet_start is None) != (update.quiet_end is None):
        raise ValidationFailed("invalid_quiet_hours", "Quiet hours need a start and an end")
    if update.quiet_start is not None and update.quiet_end is not None:
        _parse_time(update.quiet_start, "start")
        _parse_time(update.quiet_end, "end")
    try:
        ZoneInfo(update.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            "invalid_timezone", "timezone must be an IANA zone such as Europe/Berlin"
        ) from None
    if update.locale not in LOCALES:
        raise ValidationFailed("unsupported_locale", f"locale must be one of {', '.join(LOCALES)}")
    if not 0 <= update.digest_minutes <= MAX_DIGEST_MINUTES:
        raise ValidationFailed(
            "invalid_digest", f"digest_minutes must be 0 to {MAX_DIGEST_MINUTES}"
        )
    return {
        "channels": channels,
        "quiet_start": update.quiet_start,
        "quiet_end": update.quiet_end,
        "timezone": update.timezone,
        "digest_minutes": update.digest_minutes,
        "locale": update.locale,
    }


async def _upsert(user_id: UUID, values: dict[str, Any]) -> None:
    if await NotificationPreference.filter(user_id=user_id).update(**values):
        return
    try:
        await NotificationPreference.create(user_id=user_id, **values)
    except IntegrityError:  # created meanwhile by another request
        await NotificationPreference.filter(user_id=user_id).update(**values)


async def replace_preferences(*, user_id: UUID, update: PreferencesUpdate) -> Preferences:
    await _upsert(user_id, check_update(update))
    return await load_preferences(user_id)


async def turn_off_email(*, user_id: UUID, type: str) -> None:
    """The one-click unsubscribe: no more mail of `type` for this user (other choices kept)."""
    async with in_transaction():
        row = await NotificationPreference.filter(user_id=user_id).select_for_update().first()
        if row is None:
            try:
                await NotificationPreference.create(
                    user_id=user_id, channels={type: {Channel.EMAIL.value: False}}
                )
            except IntegrityError:
                pass
            else:
                return
            row = await NotificationPreference.filter(user_id=user_id).select_for_update().get()
        channels = dict(row.channels)
        channels[type] = {**channels.get(type, {}), Channel.EMAIL.value: False}
        await NotificationPreference.filter(id=row.id).update(channels=channels)
