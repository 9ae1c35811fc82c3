"""Web push without a network: VAPID keys (kept, parsed, never shown), settings, topics,
backoff and Retry-After, subscription checks."""

from __future__ import annotations

import base64
import re
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from api.cli import main
from core.clock import utcnow
from core.errors import ConfigError, ValidationFailed
from core.settings import load_settings
from hub.push import (
    KEY_FILE,
    RetryPolicy,
    VapidKeys,
    _retry_after_seconds,
    check_subscription,
    conversation_topic,
    load_vapid_keys,
    parse_vapid_private_key,
)
from tests.fakes.push_service import BrowserSubscription

RAW_KEY = base64.urlsafe_b64encode(bytes(range(1, 33))).rstrip(b"=").decode()


def test_a_generated_key_is_kept_private_and_reused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "var", _env_file=None)
    first = load_vapid_keys(settings)
    path = tmp_path / "var" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    again = load_vapid_keys(settings)
    assert again.application_server_key == first.application_server_key
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no temporary left behind
    assert "PRIVATE" not in repr(first)


def test_a_configured_key_wins_and_nothing_is_written(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, vapid_private_key=RAW_KEY, _env_file=None)
    keys = load_vapid_keys(settings)
    pem = keys.private_pem().decode()
    assert parse_vapid_private_key(pem).application_server_key == keys.application_server_key
    assert not (tmp_path / KEY_FILE).exists()
    point = base64.urlsafe_b64decode(keys.application_server_key + "=")
    assert (len(point), point[0]) == (65, 4)


def test_a_garbage_file_stops_start_up_without_echoing_it(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END")
    settings = load_settings(data_dir=tmp_path, _env_file=None)
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY") as caught:
        load_vapid_keys(settings)
    assert "c2VjcmV0" not in str(caught.value)


def test_other_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="P-256"):
        VapidKeys(ec.generate_private_key(ec.SECP384R1()))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("vapid_private_key", "too-short", "PEM private key or 32 bytes"),
        ("vapid_subject", "support@example.com", "mailto: address or an https: URL"),
        ("vapid_subject", "http://example.com", "mailto: address or an https: URL"),
        ("push_max_attempts", 0, "greater than or equal to 1"),
    ],
)
def test_bad_push_settings_name_themselves(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(**{name: value}, _env_file=None)
    assert caught.value.setting == name.upper()
    assert "too-short" not in str(caught.value)


def test_push_settings_defaults() -> None:
    settings = load_settings(_env_file=None, vapid_private_key="  ")
    assert settings.vapid_private_key is None
    assert settings.vapid_subject == "mailto:support@ideinstein.local"
    assert settings.push_max_attempts == 5


def test_config_output_hides_the_vapid_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAPID_PRIVATE_KEY", RAW_KEY)
    assert main(["config"]) == 0
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    assert RAW_KEY not in out
    assert re.search(r"^VAPID_PRIVATE_KEY +\*{10}$", out, re.MULTILINE)
    assert '"vapid_private_key": "**********"' in out


def test_topics_are_short_url_safe_and_per_conversation() -> None:
    a, b = conversation_topic("0193-a"), conversation_topic("0193-b")
    assert a != b
    assert a == conversation_topic("0193-a")
    for topic in (a, b):
        assert len(topic) == 32
        assert re.fullmatch(r"conv-[A-Za-z0-9_-]+", topic)


def test_backoff_doubles_with_jitter_caps_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0, max_retry_after=60.0)
    for _ in range(50):
        assert 0.5 <= policy.delay(1, None) <= 1.0
        assert 1.0 <= policy.delay(2, None) <= 2.0
        assert 1.5 <= policy.delay(5, None) <= 3.0  # capped
        assert policy.delay(1, 10.0) == 10.0
        assert policy.delay(1, 3600.0) == 60.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after_seconds("7") == 7.0
    later = utcnow() + timedelta(seconds=30)
    as_date = later.strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = _retry_after_seconds(as_date)
    assert seconds is not None
    assert 28 <= seconds <= 30
    assert _retry_after_seconds("soon") is None
    assert _retry_after_seconds(None) is None


def test_subscription_checks() -> None:
    browser = BrowserSubscription(endpoint="https://updates.push.services.mozilla.com/wpush/v2/x")
    check_subscription(endpoint=browser.endpoint, p256dh=browser.p256dh, auth=browser.auth)
    check_subscription(endpoint="http://[::1]:9/p", p256dh=browser.p256dh, auth=browser.auth)
    for endpoint in ("http://example.com/p", "https://192.168.1.1/p", "https://:443/p"):
        with pytest.raises(ValidationFailed) as caught:
            check_subscription(endpoint=endpoint, p256dh=browser.p256dh, auth=browser.auth)
        assert caught.value.code == "invalid_push_endpoint"
    not_on_curve = "BA" + "A" * 85
    with pytest.raises(ValidationFailed) as caught:
        check_subscription(endpoint=browser.endpoint, p256dh=not_on_curve, auth=browser.auth)
    assert caught.value.code == "invalid_push_keys"
