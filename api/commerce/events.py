"""News gathered inside a transaction and published once it has committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from core.bus import EventBus
from hub.notify import Inbox


@dataclass(frozen=True, slots=True)
class Notice:
    """An inbox entry for a customer (written, then announced, by the hub's Inbox)."""

    user_id: UUID
    type: str
    title: str
    body: str
    link: str
    data: dict[str, Any]


@dataclass(slots=True)
class Outbox:
    events: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def add(self, event_type: str, data: dict[str, Any], *, subject: str | None = None) -> None:
        self.events.append((event_type, data, subject))

    def notify(
        self, *, user_id: UUID, type: str, title: str, body: str = "", link: str = "", **data: Any
    ) -> None:
        self.notices.append(
            Notice(user_id=user_id, type=type, title=title, body=body, link=link, data=data)
        )

    async def publish(self, bus: EventBus, *, actor_id: UUID | None = None) -> None:
        """Call after commit: bus events first, then the customers' inbox entries."""
        actor = str(actor_id) if actor_id is not None else None
        for event_type, data, subject in self.events:
            await bus.emit(event_type, data, actor_id=actor, subject=subject)
        inbox = Inbox(bus=bus)
        for notice in self.notices:
            await inbox.create(
                user_id=notice.user_id,
                type=notice.type,
                title=notice.title,
                body=notice.body,
                link=notice.link,
                data=notice.data,
            )
        self.events.clear()
        self.notices.clear()
