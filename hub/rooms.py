"""Room names. The server alone puts sockets in rooms, after checking they may be there."""

from __future__ import annotations

from uuid import UUID

STAFF = "staff"
DASHBOARD = "dashboard"


def user_room(user_id: UUID | str) -> str:
    return f"user:{user_id}"


def conversation_room(conversation_id: UUID | str) -> str:
    return f"conversation:{conversation_id}"


def file_room(file_id: UUID | str) -> str:
    return f"file:{file_id}"


def dashboard_room(event_type: str) -> str:
    return f"{DASHBOARD}:{event_type}"


def parse_room(room: str) -> tuple[str, str | None]:
    """`conversation:<id>` -> ("conversation", "<id>"); `dashboard` -> ("dashboard", None)."""
    kind, _, ident = room.partition(":")
    return kind, ident or None
