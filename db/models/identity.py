"""Accounts. The identity issue extends this module (sessions, tokens, OAuth, API keys)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class Role(StrEnum):
    CUSTOMER = "customer"
    EDITOR = "editor"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"


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
