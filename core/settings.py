"""Settings: one frozen object built from the environment (and an optional `.env`).

The defaults are the embedded mode: SQLite under `./var`, the in-process bus, local-disk blobs,
mail written to `./var/outbox`. Production sets the URLs below. Nothing here is read at import
time: `load_settings()` is called by the command line (or a test) and the result is passed down.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError

DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")
STORAGE_SCHEMES = ("file", "s3")
CLAMD_SCHEMES = ("tcp", "unix")
SMTP_SCHEMES = ("smtp", "smtps")
OAUTH_PROVIDERS = ("google", "microsoft", "linkedin")
OAUTH_CREDENTIALS = tuple(
    f"oauth_{name}_{part}" for name in OAUTH_PROVIDERS for part in ("client_id", "client_secret")
)
OAUTH_DISCOVERY_URLS = tuple(f"oauth_{name}_discovery_url" for name in OAUTH_PROVIDERS)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


def _check_url(value: str, schemes: tuple[str, ...]) -> SplitResult:
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"malformed URL ({exc})") from None
    if not parts.scheme:
        raise ValueError(
            f"malformed URL {value!r}: no scheme (expected one of {', '.join(schemes)})"
        )
    if parts.scheme not in schemes:
        raise ValueError(f"unknown backend {parts.scheme!r} (expected one of {', '.join(schemes)})")
    return parts


def _needs_host(parts: SplitResult, value: str) -> None:
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"malformed URL {value!r}: no host")


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address: traffic that never leaves this machine, the one
    place where plain http is acceptable for endpoints that carry secrets (test servers)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every setting the service reads. Environment variable = field name in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, production or test"
    )
    host: str = Field("127.0.0.1", description="Address `ideinstein serve` binds to")
    port: int = Field(8080, ge=1, le=65535, description="Port `ideinstein serve` listens on")
    public_url: str = Field(
        "http://127.0.0.1:8080", description="The address browsers use to reach the service"
    )
    data_dir: Path = Field(
        Path("var"), description="Embedded mode's home: SQLite file, blobs, outbox, secrets"
    )
    database_url: str = Field(
        "sqlite://var/ideinstein.db",
        description="sqlite://PATH or postgres://USER@HOST/DB; default: ideinstein.db in DATA_DIR",
    )
    redis_url: str | None = Field(
        None, description="Redis for bus, presence, rate limits and Celery; unset = in-process"
    )
    redis_prefix: str = Field(
        "ideinstein:", description="Prefix of every Redis key and channel this service uses"
    )
    storage_url: str = Field(
        "file://var/blobs",
        description="file://DIR for local disk or s3://BUCKET for S3; default: blobs in DATA_DIR",
    )
    clamd_url: str | None = Field(
        None, description="tcp://HOST:PORT or unix:///path of clamd; unset = no scanning"
    )
    smtp_url: str | None = Field(
        None, description="smtp(s)://USER:PASS@HOST:PORT; unset = mail written to var/outbox"
    )
    mail_from: str = Field(
        "IdEinstein <no-reply@ideinstein.local>", description="The From of every mail we send"
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs tokens; unset in development = generated once and kept in var/",
    )
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated keys that still verify tokens during a key rotation",
    )
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed to call the API"
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or networks whose X-Forwarded-For is believed",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = Field(LogFormat.CONSOLE, description="console or json")
    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body outside uploads, in bytes"
    )
    uvloop: bool = Field(True, description="Run the event loop on uvloop when installed")
    chat_max_body_chars: int = Field(
        10_000, ge=1, le=1_000_000, description="Longest chat message body, in characters"
    )
    presence_grace_seconds: float = Field(
        10.0, ge=0, description="How long a user without connections stays online (reloads)"
    )
    presence_ttl_seconds: float = Field(
        30.0, ge=3, description="A connection's presence expires this long after its node dies"
    )
    render_soft_time_limit: int = Field(
        300, ge=1, description="Seconds a render may take before it is asked to stop (timeout)"
    )
    render_time_limit: int = Field(
        330, ge=2, description="Seconds after which a render's worker process is killed"
    )
    # Files (tus uploads, scanning, share links).
    upload_max_bytes: int = Field(
        500 * 1024 * 1024, ge=1, description="Largest upload (tus Upload-Length and on the wire)"
    )
    upload_temp_budget_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        ge=1,
        description="Temporary disk all unfinished uploads may hold together",
    )
    upload_expiry_seconds: int = Field(
        86_400, ge=60, description="An unfinished upload is removed this long after its last byte"
    )
    scan_retry_seconds: float = Field(
        30.0, gt=0, description="First wait before a scan is retried while clamd is unreachable"
    )
    render_workers: int = Field(
        2, ge=1, le=64, description="Local render processes in embedded mode (no REDIS_URL)"
    )
    web_dist_dir: Path | None = Field(
        None, description="The built pages (Vite's dist); unset = web/dist of the checkout"
    )
    render_egl_device: int = Field(
        0, ge=0, description="EGL device index VTK renders on (the GPU, or Mesa on the CPU)"
    )
    shutdown_timeout: float = Field(
        3.0, ge=0, description="Seconds `serve` waits for open connections at shutdown"
    )
    # Web push (VAPID, RFC 8292).
    vapid_private_key: SecretStr | None = Field(
        None,
        description="VAPID P-256 private key, PEM or base64url raw; unset = generated in DATA_DIR",
    )
    vapid_subject: str = Field(
        "mailto:support@ideinstein.local",
        description="VAPID contact for push services, a mailto: or https: URL",
    )
    push_max_attempts: int = Field(
        5, ge=1, le=20, description="Attempts per web push before it is given up as dead"
    )
    # Email (notification mails, queue, DKIM, tracking).
    notification_email_delay_seconds: float = Field(
        600.0, ge=0, description="An unread notification is mailed this long after it was made"
    )
    email_max_attempts: int = Field(
        6, ge=1, le=30, description="Tries per mail before it becomes a dead letter"
    )
    email_retry_base_seconds: float = Field(
        30.0, ge=0, description="Wait before a mail's second try, doubling for each try after"
    )
    email_poll_seconds: float = Field(
        2.0, gt=0, description="How often each hub process looks for mail that is due"
    )
    email_domain_rate_per_minute: int = Field(
        120, ge=1, description="Mails per minute to one recipient domain, over all processes"
    )
    dkim_private_key: SecretStr | None = Field(
        None, description="PEM RSA key signing mail for MAIL_FROM's domain; unset = unsigned"
    )
    dkim_selector: str = Field(
        "ideinstein", description="DKIM selector: the key is published at SELECTOR._domainkey"
    )
    email_webhook_secret: SecretStr | None = Field(
        None, description="Shared secret of the bounce webhook (HMAC-SHA256); unset = webhook off"
    )
    email_redirect_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts besides PUBLIC_URL's that tracked links may lead to",
    )
    # Commerce (payments through Stripe, tax origin, checkout reservations).
    stripe_secret_key: SecretStr | None = Field(
        None, description="Stripe secret key (sk_live_/sk_test_...); unset = no card payments"
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="Signing secret of the Stripe webhook (whsec_...); unset = refused"
    )
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="Stripe's API (https; plain http only on loopback)"
    )
    paypal_client_id: str | None = Field(
        None, description="PayPal REST app client id; unset = no PayPal checkout"
    )
    paypal_client_secret: SecretStr | None = Field(
        None, description="PayPal REST app secret (required with the client id)"
    )
    paypal_webhook_id: str | None = Field(
        None, description="Id of the PayPal webhook, for its verification API; unset = refused"
    )
    paypal_api_base: str = Field(
        "https://api-m.paypal.com",
        description="PayPal's REST API (https; plain http only on loopback)",
    )
    vies_api_base: str | None = Field(
        "https://ec.europa.eu/taxation_customs/vies/rest-api",
        description="The EU's VIES REST API, asked whether a business customer's VAT id is "
        "registered before reverse charge applies; empty = format checks only",
    )
    commerce_seller_country: str = Field(
        "DE", pattern=r"^[A-Z]{2}$", description="Country the shop sells from (VAT origin)"
    )
    commerce_reservation_minutes: float = Field(
        30.0, gt=0, description="How long an unpaid checkout holds its stock and coupon"
    )
    # Sign-in with OpenID Connect: a provider is offered when its client id is set.
    oauth_google_client_id: str | None = Field(
        None, description="Google OAuth client id; unset = no sign-in with Google"
    )
    oauth_google_client_secret: SecretStr | None = Field(
        None, description="Google OAuth client secret (required with the client id)"
    )
    oauth_google_discovery_url: str = Field(
        "https://accounts.google.com/.well-known/openid-configuration",
        description="Google's OpenID discovery document",
    )
    oauth_microsoft_client_id: str | None = Field(
        None, description="Microsoft Entra application id; unset = no sign-in with Microsoft"
    )
    oauth_microsoft_client_secret: SecretStr | None = Field(
        None, description="Microsoft Entra client secret (required with the client id)"
    )
    oauth_microsoft_discovery_url: str = Field(
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
        description="Microsoft's OpenID discovery document (common = any tenant)",
    )
    oauth_linkedin_client_id: str | None = Field(
        None, description="LinkedIn OAuth client id; unset = no sign-in with LinkedIn"
    )
    oauth_linkedin_client_secret: SecretStr | None = Field(
        None, description="LinkedIn OAuth client secret (required with the client id)"
    )
    oauth_linkedin_discovery_url: str = Field(
        "https://www.linkedin.com/oauth/.well-known/openid-configuration",
        description="LinkedIn's OpenID discovery document",
    )

    @model_validator(mode="before")
    @classmethod
    def _embedded_paths_follow_data_dir(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("data_dir") not in (None, ""):
            home = str(data["data_dir"]).rstrip("/")
            data.setdefault("database_url", f"sqlite://{home}/ideinstein.db")
            data.setdefault("storage_url", f"file://{home}/blobs")
        return data

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        parts = _check_url(value, DATABASE_SCHEMES)
        if parts.scheme == "sqlite":
            if not (parts.netloc + parts.path):
                raise ValueError(f"malformed URL {value!r}: no file path")
        else:
            _needs_host(parts, value)
            if not parts.path.strip("/"):
                raise ValueError(f"malformed URL {value!r}: no database name")
        return value

    @field_validator("redis_url", "clamd_url", "smtp_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            _needs_host(_check_url(value, REDIS_SCHEMES), value)
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        parts = _check_url(value, STORAGE_SCHEMES)
        if not (parts.netloc + parts.path):
            raise ValueError(f"malformed URL {value!r}: no directory or bucket")
        return value

    @field_validator("clamd_url")
    @classmethod
    def _check_clamd_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = _check_url(value, CLAMD_SCHEMES)
            _needs_host(parts, value)
            if parts.scheme == "tcp" and parts.port is None:
                raise ValueError(f"malformed URL {value!r}: no port")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str | None) -> str | None:
        if value is not None:
            _needs_host(_check_url(value, SMTP_SCHEMES), value)
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        _needs_host(_check_url(value, ("http", "https")), value)
        return value.rstrip("/")

    @field_validator("redis_prefix")
    @classmethod
    def _check_redis_prefix(cls, value: str) -> str:
        if any(ch in value for ch in "*?[]\\ "):
            raise ValueError("must not contain glob characters or spaces")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (HS256 wants 256 bits)")
        return value

    @field_validator("previous_secret_keys")
    @classmethod
    def _check_previous_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(key.get_secret_value()) < 32 for key in value):
            raise ValueError("every key must be at least 32 characters")
        return value

    @field_validator("vapid_private_key", mode="before")
    @classmethod
    def _blank_vapid_key_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("vapid_private_key")
    @classmethod
    def _check_vapid_key(cls, value: SecretStr | None) -> SecretStr | None:
        # The shape only (the hub parses the key): the message never repeats the value.
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if text.startswith("-----BEGIN") and "PRIVATE KEY-----" in text:
            return SecretStr(text)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise ValueError("must be a PEM private key or 32 bytes in base64url (P-256)")
        return SecretStr(text)

    @field_validator("vapid_subject")
    @classmethod
    def _check_vapid_subject(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "mailto" and "@" in parts.path:
            return value
        if parts.scheme == "https" and parts.hostname:
            return value
        raise ValueError("must be a mailto: address or an https: URL")

    @field_validator("dkim_private_key", "email_webhook_secret", mode="before")
    @classmethod
    def _blank_email_secret_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dkim_selector")
    @classmethod
    def _check_dkim_selector(cls, value: str) -> str:
        labels = value.split(".")
        if not all(label and label.replace("-", "").isalnum() for label in labels):
            raise ValueError("must be DNS labels (letters, digits, hyphens)")
        return value

    @field_validator("email_redirect_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower().rstrip(".") for host in value]

    @field_validator(
        "stripe_secret_key",
        "stripe_webhook_secret",
        "paypal_client_id",
        "paypal_client_secret",
        "paypal_webhook_id",
        mode="before",
    )
    @classmethod
    def _blank_stripe_secret_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vies_api_base", mode="before")
    @classmethod
    def _blank_vies_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("stripe_api_base", "paypal_api_base", "vies_api_base")
    @classmethod
    def _check_payment_api_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = _check_url(value, ("https", "http"))
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            raise ValueError(f"{value!r} must be https (plain http only for a loopback host)")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an address or network") from None
        return value

    @field_validator(
        "cors_allowed_origins",
        "previous_secret_keys",
        "trusted_proxies",
        "email_redirect_hosts",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = _check_url(origin, ("http", "https"))
            if not parts.hostname or parts.path not in ("", "/") or parts.query:
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return [origin.rstrip("/") for origin in value]

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator(*OAUTH_CREDENTIALS, mode="before")
    @classmethod
    def _blank_credential_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator(*OAUTH_DISCOVERY_URLS)
    @classmethod
    def _check_discovery_url(cls, value: str) -> str:
        parts = _check_url(value, ("https", "http"))
        _needs_host(parts, value)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            raise ValueError(f"{value!r} must be https (plain http only for a loopback host)")
        return value

    @model_validator(mode="after")
    def _check_oauth_secrets(self) -> Settings:
        for provider in OAUTH_PROVIDERS:
            client_id = getattr(self, f"oauth_{provider}_client_id")
            if client_id is not None and getattr(self, f"oauth_{provider}_client_secret") is None:
                name = provider.upper()
                raise ValueError(
                    f"OAUTH_{name}_CLIENT_SECRET must be set when OAUTH_{name}_CLIENT_ID is"
                )
        return self

    @model_validator(mode="after")
    def _check_time_limits(self) -> Settings:
        if self.render_soft_time_limit >= self.render_time_limit:
            raise ValueError("RENDER_SOFT_TIME_LIMIT must be below RENDER_TIME_LIMIT")
        return self

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION and self.secret_key is None:
            raise ValueError("SECRET_KEY must be set in production")
        return self

    # Derived facts, so callers never parse URLs themselves.
    @property
    def is_postgres(self) -> bool:
        return urlsplit(self.database_url).scheme in ("postgres", "postgresql")

    @property
    def is_embedded_database(self) -> bool:
        return not self.is_postgres

    @property
    def uses_redis(self) -> bool:
        return self.redis_url is not None

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    def redacted(self) -> dict[str, Any]:
        """The effective settings with every secret (keys, URL passwords) hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********"
            elif isinstance(value, list) and value and isinstance(value[0], SecretStr):
                value = ["**********"] * len(value)
            elif isinstance(value, str) and "://" in value:
                value = _redact_url(value)
            elif isinstance(value, StrEnum):
                value = value.value
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def _redact_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.password is None:
        return value
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:**********@{host}{port}").geturl()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment; raise `ConfigError` naming the bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        name = str(loc[0]).upper() if loc else "settings"
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}", setting=name) from None
