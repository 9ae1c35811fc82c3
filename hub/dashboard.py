"""Staff dashboard pushes: bus events relayed to the sockets allowed (and wanting) to see them.

Each event type has its own room `dashboard:<type>`; a staff socket that subscribes to the
dashboard joins the rooms of the types its permissions allow and its owner follows. Every node
relays the bus event to its own sockets only, so nothing is delivered twice across nodes.
"""

from __future__ import annotations

from core.errors import ValidationFailed
from core.permissions import Permission
from core.principal import Principal
from db.models.chat import DashboardFollow

# Event type -> the permission needed to see it on the dashboard.
DASHBOARD_TYPES: dict[str, Permission] = {
    "order.created": Permission.ORDERS_READ_ANY,
    "order.paid": Permission.ORDERS_READ_ANY,
    "order.refunded": Permission.ORDERS_READ_ANY,
    "file.uploaded": Permission.FILES_READ_ANY,
    "file.scanned": Permission.FILES_READ_ANY,
    "render.progress": Permission.DASHBOARD_READ,
    "render.completed": Permission.DASHBOARD_READ,
    "render.failed": Permission.DASHBOARD_READ,
    "form.submitted": Permission.DASHBOARD_READ,
    "inventory.low_stock": Permission.CATALOG_MANAGE,
    "security.event": Permission.SECURITY_EVENTS_READ,
    "chat.conversation_created": Permission.CHAT_READ_ANY,
    "chat.conversation_assigned": Permission.CHAT_READ_ANY,
    "chat.conversation_unassigned": Permission.CHAT_READ_ANY,
}


def allowed_types(principal: Principal) -> set[str]:
    return {t for t, needed in DASHBOARD_TYPES.items() if principal.can(needed)}


async def followed_types(principal: Principal) -> set[str]:
    """What this staff member sees: all they may, narrowed by what they chose to follow."""
    allowed = allowed_types(principal)
    follow = await DashboardFollow.get_or_none(user_id=principal.user_id)
    if follow is None or not follow.event_types:
        return allowed
    return allowed & set(follow.event_types)


async def set_followed_types(principal: Principal, types: list[str]) -> set[str]:
    unknown = sorted(set(types) - DASHBOARD_TYPES.keys())
    if unknown:
        raise ValidationFailed(
            "unknown_event_type", "Unknown event types", details={"types": unknown}
        )
    chosen = set(types) & allowed_types(principal)
    await DashboardFollow.update_or_create(
        defaults={"event_types": sorted(chosen)}, user_id=principal.user_id
    )
    return chosen if chosen else allowed_types(principal)
