"""Alerts for staff from bus events: each staff member who may act on one gets an inbox
notification, and the notification router takes it on to web push and email as their
preferences say (e.g. `inventory.low_stock` by email to whoever manages the catalog).

Every hub node hears the bus event; a claim on the event's id lets exactly one node write the
notifications (the in-process claims of the embedded mode always say yes: one process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.bus import Event
from core.permissions import Permission, Role, has_permission
from db.models.identity import User
from hub.notify import Inbox
from hub.router import Claims


@dataclass(frozen=True)
class Alert:
    permission: Permission
    title: Callable[[dict[str, Any]], str]
    body: Callable[[dict[str, Any]], str]
    link: str


ALERTS: dict[str, Alert] = {
    "inventory.low_stock": Alert(
        permission=Permission.CATALOG_MANAGE,
        title=lambda d: f"Low stock: {d.get('sku', '')}",
        body=lambda d: (
            f"{d.get('available', 0)} available ({d.get('on_hand', 0)} on hand), "
            f"threshold {d.get('threshold', 0)}"
        ),
        link="/dashboard/catalog",
    ),
}


class StaffAlerts:
    def __init__(self, *, inbox: Inbox, claims: Claims) -> None:
        self._inbox = inbox
        self._claims = claims

    async def on_event(self, event: Event) -> None:
        alert = ALERTS.get(event.type)
        if alert is None or not await self._claims.first(f"staff-alert:{event.id}"):
            return
        roles = [role for role in Role if has_permission(role, alert.permission)]
        recipients = await User.filter(role__in=roles, is_active=True).values_list("id", flat=True)
        for user_id in recipients:
            await self._inbox.create(
                user_id=user_id,  # type: ignore[arg-type]
                type=event.type,
                title=alert.title(event.data),
                body=alert.body(event.data),
                link=alert.link,
                data=dict(event.data),
            )
