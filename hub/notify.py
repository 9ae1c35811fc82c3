"""The in-app inbox: a notification is written first, then announced (`notification.created`),
and every node pushes it to the user's open connections. `sync` replays what was missed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from core.bus import EventBus
from core.clock import utcnow
from core.errors import NotFound
from db.models.chat import Notification

REPLAY_LIMIT = 500


@dataclass(frozen=True, slots=True)
class NotificationView:
    id: UUID
    user_id: UUID
    type: str
    title: str
    body: str
    link: str
    data: dict[str, Any]
    created_at: datetime
    read: bool

    @classmethod
    def of(cls, row: Notification) -> NotificationView:
        return cls(
            id=row.id,
            user_id=row.user_id,  # type: ignore[attr-defined]
            type=row.type,
            title=row.title,
            body=row.body,
            link=row.link,
            data=dict(row.data),
            created_at=row.created_at,
            read=row.read_at is not None,
        )

    def wire(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "title": self.title,
            "body": self.body,
            "link": self.link,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "read": self.read,
        }


class Inbox:
    def __init__(self, *, bus: EventBus) -> None:
        self._bus = bus

    async def create(
        self,
        *,
        user_id: UUID,
        type: str,
        title: str,
        body: str = "",
        link: str = "",
        data: dict[str, Any] | None = None,
    ) -> NotificationView:
        row = await Notification.create(
            user_id=user_id,
            type=type,
            title=title[:200],
            body=body,
            link=link[:500],
            data=data or {},
        )
        view = NotificationView.of(row)
        await self._bus.emit(
            "notification.created",
            {**view.wire(), "user_id": str(user_id)},
            subject=f"user:{user_id}",
        )
        return view

    async def after(
        self, *, user_id: UUID, after_id: UUID | None, limit: int = REPLAY_LIMIT
    ) -> tuple[list[NotificationView], bool]:
        query = Notification.filter(user_id=user_id)
        if after_id is not None:
            query = query.filter(id__gt=after_id)
        rows = await query.order_by("id").limit(limit + 1)
        return [NotificationView.of(r) for r in rows[:limit]], len(rows) > limit

    async def page(
        self, *, user_id: UUID, after_id: UUID | None, limit: int, unread_only: bool = False
    ) -> tuple[list[NotificationView], bool]:
        """The user's notifications after `after_id`, oldest first (ids sort by time)."""
        query = Notification.filter(user_id=user_id)
        if after_id is not None:
            query = query.filter(id__gt=after_id)
        if unread_only:
            query = query.filter(read_at__isnull=True)
        rows = await query.order_by("id").limit(limit + 1)
        return [NotificationView.of(r) for r in rows[:limit]], len(rows) > limit

    async def mark_read(self, *, user_id: UUID, notification_id: UUID) -> NotificationView:
        """Mark one of the user's own notifications read (another's is `notification_not_found`)."""
        row = await Notification.get_or_none(id=notification_id, user_id=user_id)
        if row is None:
            raise NotFound("notification_not_found", "No such notification")
        if row.read_at is None:
            await self._mark_read(user_id=user_id, ids=[row.id])
            await row.refresh_from_db(fields=["read_at"])
        return NotificationView.of(row)

    async def mark_all_read(self, *, user_id: UUID) -> list[UUID]:
        rows = (
            await Notification.filter(user_id=user_id, read_at__isnull=True)
            .order_by("id")
            .only("id")
        )
        return await self._mark_read(user_id=user_id, ids=[row.id for row in rows])

    async def _mark_read(self, *, user_id: UUID, ids: list[UUID]) -> list[UUID]:
        """Set read_at, then announce `notification.read` {user_id, ids} so the channels can
        drop pushes and mails that are no longer needed."""
        if not ids:
            return []
        count = await Notification.filter(user_id=user_id, id__in=ids, read_at__isnull=True).update(
            read_at=utcnow()
        )
        if count:
            await self._bus.emit(
                "notification.read",
                {"user_id": str(user_id), "ids": [str(i) for i in ids]},
                subject=f"user:{user_id}",
            )
        return ids

    async def mark_delivered(self, *, user_id: UUID, ids: list[UUID]) -> int:
        count: int = await Notification.filter(
            user_id=user_id, id__in=ids, delivered_at__isnull=True
        ).update(delivered_at=utcnow())
        return count
