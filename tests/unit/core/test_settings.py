from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Environment, LogFormat, Settings, load_settings


def test_defaults_are_the_embedded_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.database_url == "sqlite://var/ideinstein.db"
    assert settings.is_embedded_database
    assert settings.redis_url is None
    assert not settings.uses_redis
    assert settings.storage_url == "file://var/blobs"
    assert settings.clamd_url is None
    assert settings.smtp_url is None
    assert settings.outbox_dir == Path("var/outbox")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.environment is Environment.DEVELOPMENT


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@db.internal:5432/hub")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example/")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(_env_file=None)
    assert settings.is_postgres
    assert settings.uses_redis
    assert settings.cors_allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.log_format is LogFormat.JSON
    assert settings.log_level == "DEBUG"


def test_embedded_paths_follow_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", "/srv/hub")
    settings = load_settings(_env_file=None)
    assert settings.database_url == "sqlite:///srv/hub/ideinstein.db"
    assert settings.storage_url == "file:///srv/hub/blobs"
    monkeypatch.setenv("DATABASE_URL", "postgres://db/hub")
    assert load_settings(_env_file=None).database_url == "postgres://db/hub"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=9191\nREDIS_URL=\n", encoding="utf-8")
    settings = load_settings()
    assert settings.port == 9191
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://root@localhost/db", "DATABASE_URL: unknown backend 'mysql'"),
        ("DATABASE_URL", "not a url", "DATABASE_URL: malformed URL"),
        ("DATABASE_URL", "postgres://localhost", "DATABASE_URL: malformed URL"),
        ("DATABASE_URL", "postgres:///db", "DATABASE_URL: malformed URL"),
        ("DATABASE_URL", "sqlite://", "DATABASE_URL: malformed URL"),
        ("REDIS_URL", "memcached://localhost", "REDIS_URL: unknown backend 'memcached'"),
        ("REDIS_URL", "redis://", "REDIS_URL: malformed URL"),
        ("STORAGE_URL", "ftp://files", "STORAGE_URL: unknown backend 'ftp'"),
        ("STORAGE_URL", "s3://", "STORAGE_URL: malformed URL"),
        ("CLAMD_URL", "tcp://127.0.0.1", "CLAMD_URL: malformed URL"),
        ("SMTP_URL", "http://mail", "SMTP_URL: unknown backend 'http'"),
        ("PORT", "eighty", "PORT:"),
        ("PORT", "70000", "PORT:"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: unknown log level"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT:"),
        ("CORS_ALLOWED_ORIGINS", "https://a.example/path", "CORS_ALLOWED_ORIGINS:"),
        ("PUBLIC_URL", "ws://host", "PUBLIC_URL: unknown backend 'ws'"),
        ("REDIS_PREFIX", "bad*prefix", "REDIS_PREFIX: must not contain glob"),
        ("SECRET_KEY", "short", "SECRET_KEY: must be at least 32 characters"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,nonsense", "TRUSTED_PROXIES: 'nonsense' is not"),
    ],
)
def test_bad_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith(message)
    assert caught.value.setting == name
    assert "\n" not in str(caught.value)


def test_production_requires_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY must be set in production"):
        load_settings(_env_file=None)
    monkeypatch.setenv("SECRET_KEY", "s" * 48)
    assert load_settings(_env_file=None).environment is Environment.PRODUCTION


def test_redacted_hides_secrets_and_url_passwords() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        secret_key="top-secret-value-top-secret-value-42",
        database_url="postgres://app:hunter2@db:5432/hub",
        redis_url="redis://:cachepw@cache:6379/0",
        smtp_url="smtp://mailer:mailpw@mail:587",
    )
    shown = settings.redacted()
    text = repr(shown)
    for secret in ("top-secret-value-top-secret-value-42", "hunter2", "cachepw", "mailpw"):
        assert secret not in text
    assert shown["database_url"] == "postgres://app:**********@db:5432/hub"
    assert shown["secret_key"] == "**********"
    assert shown["storage_url"] == "file://var/blobs"


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]
