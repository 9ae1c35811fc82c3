"""Accounts, sessions and their tokens, API keys, linked OAuth identities, the security log.

Secrets (refresh tokens, one-time tokens, API keys) are stored as SHA-256 digests only: they
are long random strings, so a fast hash is enough and lookups stay indexed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id
from core.permissions import Role

__all__ = [
    "ApiKey",
    "AuthSession",
    "OAuthAccount",
    "OneTimeToken",
    "RefreshToken",
    "Role",
    "SecurityEvent",
    "TokenPurpose",
    "User",
]


class User(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    email = fields.CharField(max_length=320, unique=True, description="Lower-cased address")
    password_hash = fields.CharField(
        max_length=255,
        null=True,
        description="argon2id hash, null when the account has no password",
    )
    display_name = fields.CharField(max_length=120, default="")
    role = fields.CharEnumField(Role, max_length=20, default=Role.CUSTOMER)
    is_active = fields.BooleanField(default=True)
    email_verified_at = fields.DatetimeField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"

    def __str__(self) -> str:
        return self.email


class AuthSession(Model):
    """A signed-in device: the family of refresh tokens issued to it (`sid` in access tokens)."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(description="Absolute end, however often it is refreshed")
    revoked_at = fields.DatetimeField(null=True)
    revoke_reason = fields.CharField(max_length=40, default="")
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=300, default="")

    class Meta:
        table = "auth_sessions"


class RefreshToken(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    session: fields.ForeignKeyRelation[AuthSession] = fields.ForeignKeyField(
        "models.AuthSession", related_name="refresh_tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True, description="Set when rotated, a second use is reuse")

    class Meta:
        table = "refresh_tokens"


class TokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a password


class OneTimeToken(Model):
    """Email verification and password reset links: expiring, single use."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="one_time_tokens", on_delete=fields.CASCADE
    )
    purpose = fields.CharEnumField(TokenPurpose, max_length=20)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "one_time_tokens"


class ApiKey(Model):
    """A key for third-party integrations, acting as its owner within its scopes."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    prefix = fields.CharField(max_length=16, unique=True, description="Shown to tell keys apart")
    key_hash = fields.CharField(max_length=64, unique=True)
    scopes: fields.JSONField[list[str]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True, description="Set on rotation: the grace period")
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    last_used_ip = fields.CharField(max_length=64, default="")

    class Meta:
        table = "api_keys"


class OAuthAccount(Model):
    """An identity at an OpenID provider, linked to a local account."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="oauth_accounts", on_delete=fields.CASCADE
    )
    provider = fields.CharField(max_length=40)
    subject = fields.CharField(max_length=255)
    email = fields.CharField(max_length=320, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "oauth_accounts"
        unique_together = (("provider", "subject"),)


class SecurityEvent(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    kind = fields.CharField(max_length=40, db_index=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="security_events", null=True, on_delete=fields.SET_NULL
    )
    actor_id = fields.UUIDField(null=True)
    email = fields.CharField(max_length=320, default="", description="As typed, for failures")
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=300, default="")
    data: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "security_events"
