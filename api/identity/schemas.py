"""Request and response bodies of the identity routes (also their OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from core.permissions import Permission, Role


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterRequest(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    display_name: str = Field(default="", max_length=120)


class LoginRequest(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    use_cookie: bool = Field(
        default=False,
        description="Keep the refresh token in an HttpOnly cookie (web app) instead of the body",
    )


class RefreshRequest(Strict):
    refresh_token: str | None = Field(default=None, max_length=200)


class TokenRequest(Strict):
    token: str = Field(min_length=1, max_length=200)


class EmailRequest(Strict):
    email: str = Field(max_length=320)


class PasswordResetConfirm(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=1024)


class TokenPairBody(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme's name
    expires_in: int
    refresh_token: str | None = Field(
        default=None, description="Absent when it was set as a cookie"
    )
    csrf_token: str | None = Field(
        default=None, description="With cookies: send it back as X-CSRF-Token"
    )


class UserBody(BaseModel):
    id: UUID
    email: str
    display_name: str
    role: Role
    is_active: bool
    email_verified: bool
    created_at: datetime
    last_login_at: datetime | None


class UserList(BaseModel):
    items: list[UserBody]
    next_cursor: str | None


class Accepted(BaseModel):
    status: str = "accepted"


class SuspendRequest(Strict):
    suspended: bool


class RoleRequest(Strict):
    role: Role


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Permission] = Field(min_length=1, max_length=len(Permission))


class ApiKeyBody(BaseModel):
    id: UUID
    name: str
    prefix: str
    scopes: list[Permission]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str


class ApiKeyCreated(ApiKeyBody):
    key: str = Field(description="The secret, shown this once")


class ApiKeyList(BaseModel):
    items: list[ApiKeyBody]


class RotateRequest(Strict):
    grace_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)


class SecurityEventBody(BaseModel):
    id: UUID
    kind: str
    user_id: UUID | None
    actor_id: UUID | None
    email: str
    ip: str
    user_agent: str
    data: dict[str, Any]
    created_at: datetime


class SecurityEventList(BaseModel):
    items: list[SecurityEventBody]
    next_cursor: str | None


class OAuthProviderBody(BaseModel):
    name: str = Field(description="google, microsoft or linkedin")
    label: str
    start_url: str = Field(description="Send the browser here (GET), with ?next=/path")


class OAuthProviderList(BaseModel):
    items: list[OAuthProviderBody]
