"""The security log: a table admins read, and `security.event` on the bus for the dashboard.

Called after the change it reports has committed (Zulip's rule: news after the fact).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from core.bus import EventBus
from db.models.identity import SecurityEvent


class SecurityKind(StrEnum):
    REGISTERED = "registered"
    EMAIL_VERIFIED = "email_verified"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOCKED_OUT = "locked_out"
    LOGOUT = "logout"
    REFRESH_REUSED = "refresh_reused"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105 - an event name
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an event name
    ROLE_CHANGED = "role_changed"
    SUSPENDED = "suspended"
    REACTIVATED = "reactivated"
    API_KEY_CREATED = "api_key_created"
    API_KEY_ROTATED = "api_key_rotated"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_NEW_IP = "api_key_new_ip"
    OAUTH_FAILED = "oauth_failed"
    OAUTH_LINKED = "oauth_linked"


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as far as the security log cares."""

    ip: str = ""
    user_agent: str = ""


class SecurityLog:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    async def record(
        self,
        kind: SecurityKind,
        *,
        client: Client,
        user_id: UUID | None = None,
        actor_id: UUID | None = None,
        email: str = "",
        data: dict[str, Any] | None = None,
    ) -> SecurityEvent:
        row = await SecurityEvent.create(
            kind=kind.value,
            user_id=user_id,
            actor_id=actor_id,
            email=email[:320],
            ip=client.ip[:64],
            user_agent=client.user_agent[:300],
            data=data or {},
        )
        await self._bus.emit(
            "security.event",
            {"id": str(row.id), "kind": kind.value, "ip": client.ip, **(data or {})},
            actor_id=str(actor_id or user_id) if (actor_id or user_id) else None,
            subject=f"user:{user_id}" if user_id else None,
        )
        return row


async def list_security_events(
    *,
    kind: str | None = None,
    user_id: UUID | None = None,
    ip: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: UUID | None = None,
    limit: int = 50,
) -> tuple[list[SecurityEvent], UUID | None]:
    """Newest first, keyset-paged on the (time-ordered) id; returns rows and the next cursor."""
    query = SecurityEvent.all()
    if kind:
        query = query.filter(kind=kind)
    if user_id:
        query = query.filter(user_id=user_id)
    if ip:
        query = query.filter(ip=ip)
    if since:
        query = query.filter(created_at__gte=since)
    if until:
        query = query.filter(created_at__lt=until)
    if before_id:
        query = query.filter(id__lt=before_id)
    rows = await query.order_by("-id").limit(limit + 1)
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor
