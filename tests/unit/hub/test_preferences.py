"""Preferences without a database: channel defaults, quiet hours (across midnight, in the
user's zone, over a DST change) and when a notification mail falls due."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from uuid import uuid4

import pytest

from core.errors import ValidationFailed
from hub.preferences import (
    Channel,
    Preferences,
    PreferencesUpdate,
    QuietHours,
    check_update,
)

NIGHT = QuietHours(time(22, 0), time(7, 0))


def _prefs(**kwargs: object) -> Preferences:
    return Preferences(user_id=uuid4(), **kwargs)  # type: ignore[arg-type]


def test_defaults_and_overrides() -> None:
    prefs = _prefs(overrides={"chat.new_message": {Channel.EMAIL: False}})

    assert prefs.allows("chat.new_message", Channel.WEB_PUSH) is True
    assert prefs.allows("chat.new_message", Channel.EMAIL) is False
    assert prefs.allows("security.event", Channel.EMAIL) is False  # a type's default
    assert prefs.allows("something.new", Channel.IN_APP) is True  # the fallback
    assert prefs.allows("something.new", Channel.EMAIL) is False


@pytest.mark.parametrize(
    ("local", "inside"),
    [(time(21, 59), False), (time(22, 0), True), (time(3, 0), True), (time(7, 0), False)],
)
def test_a_window_across_midnight(local: time, inside: bool) -> None:
    assert NIGHT.contains(local) is inside


def test_a_window_within_a_day_and_an_empty_one() -> None:
    lunch = QuietHours(time(12, 0), time(13, 0))
    assert lunch.contains(time(12, 30)) is True
    assert lunch.contains(time(13, 0)) is False
    assert QuietHours(time(9, 0), time(9, 0)).contains(time(9, 0)) is False


def test_quiet_until_is_the_end_of_the_window_in_the_users_zone() -> None:
    prefs = _prefs(quiet_hours=NIGHT, timezone="Europe/Berlin")
    # 23:30 in Berlin (CET, UTC+1) on 14 January = 22:30 UTC; quiet until 07:00 CET = 06:00 UTC.
    now = datetime(2026, 1, 14, 22, 30, tzinfo=UTC)

    assert prefs.quiet_until(now) == datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
    assert prefs.quiet_until(datetime(2026, 1, 14, 12, 0, tzinfo=UTC)) is None


def test_quiet_until_over_the_spring_dst_change() -> None:
    prefs = _prefs(quiet_hours=NIGHT, timezone="Europe/Berlin")
    # 29 March 2026: clocks go 02:00 -> 03:00; 07:00 is CEST (UTC+2) = 05:00 UTC.
    now = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET

    assert prefs.quiet_until(now) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def test_email_due_after_the_delay_or_the_digest_window_and_outside_quiet_hours() -> None:
    noon = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)

    assert _prefs().email_due(noon, delay=600) == noon + timedelta(minutes=10)
    assert _prefs(digest_minutes=60).email_due(noon, delay=600) == noon + timedelta(hours=1)
    night = _prefs(quiet_hours=QuietHours(time(12, 5), time(14, 0)), timezone="UTC")
    assert night.email_due(noon, delay=600) == datetime(2026, 1, 14, 14, 0, tzinfo=UTC)


def test_check_update_keeps_only_what_differs_from_the_defaults() -> None:
    values = check_update(
        PreferencesUpdate(
            channels={"chat.new_message": {"email": True, "web_push": False}},
            quiet_start="22:00",
            quiet_end="06:30",
            timezone="America/New_York",
            digest_minutes=15,
            locale="de",
        )
    )

    assert values == {
        "channels": {"chat.new_message": {"web_push": False}},
        "quiet_start": "22:00",
        "quiet_end": "06:30",
        "timezone": "America/New_York",
        "digest_minutes": 15,
        "locale": "de",
    }


@pytest.mark.parametrize(
    ("update", "code"),
    [
        (PreferencesUpdate(channels={}, quiet_start="22:00"), "invalid_quiet_hours"),
        (PreferencesUpdate(channels={}, quiet_start="7", quiet_end="8"), "invalid_quiet_hours"),
        (PreferencesUpdate(channels={}, timezone="Nowhere/City"), "invalid_timezone"),
        (PreferencesUpdate(channels={}, timezone="../../etc/passwd"), "invalid_timezone"),
        (PreferencesUpdate(channels={}, digest_minutes=10_000), "invalid_digest"),
    ],
)
def test_check_update_refuses(update: PreferencesUpdate, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_update(update)
    assert caught.value.code == code
