"""Roles and permissions: the one table that says who may do what.

A permission is a named string (`files:read_any`). Each role has a set of them; a route (HTTP
or socket) names the one it needs and the check happens in one place (`has_permission`).
Two pseudo-permissions exist for routes: `PUBLIC` (no principal needed) and `AUTHENTICATED`
(any signed-in principal; the route itself limits what it shows to the caller's own objects).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "customer"
    EDITOR = "editor"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"


STAFF_ROLES = frozenset({Role.EDITOR, Role.ADMIN, Role.SUPER_ADMIN})

PUBLIC = "public"
AUTHENTICATED = "authenticated"


class Permission(StrEnum):
    # identity and administration
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"  # suspend, reactivate, change roles up to editor
    USERS_GRANT_ADMIN = "users:grant_admin"  # make (or unmake) an admin
    SECURITY_EVENTS_READ = "security_events:read"
    API_KEYS_MANAGE = "api_keys:manage"
    # realtime and support
    CHAT_READ_ANY = "chat:read_any"
    CHAT_ASSIGN = "chat:assign"
    DASHBOARD_READ = "dashboard:read"
    # files and renders
    FILES_READ_ANY = "files:read_any"
    FILES_WRITE_ANY = "files:write_any"
    RENDER_RERUN = "render:rerun"
    # commerce
    ORDERS_READ_ANY = "orders:read_any"
    ORDERS_REFUND = "orders:refund"
    CATALOG_MANAGE = "catalog:manage"
    ORDERS_FULFIL = "orders:fulfil"  # move a paid order through fulfilment and shipping


_EDITOR = frozenset(
    {
        Permission.CHAT_READ_ANY,
        Permission.CHAT_ASSIGN,
        Permission.DASHBOARD_READ,
        Permission.FILES_READ_ANY,
        Permission.RENDER_RERUN,
        Permission.ORDERS_READ_ANY,
        Permission.CATALOG_MANAGE,
        Permission.ORDERS_FULFIL,
    }
)
_ADMIN = _EDITOR | {
    Permission.USERS_READ,
    Permission.USERS_MANAGE,
    Permission.SECURITY_EVENTS_READ,
    Permission.API_KEYS_MANAGE,
    Permission.FILES_WRITE_ANY,
    Permission.ORDERS_REFUND,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CUSTOMER: frozenset(),
    Role.EDITOR: _EDITOR,
    Role.ADMIN: frozenset(_ADMIN),
    Role.SUPER_ADMIN: frozenset(_ADMIN | {Permission.USERS_GRANT_ADMIN}),
}


def permissions_of(role: Role) -> frozenset[Permission]:
    return ROLE_PERMISSIONS[role]


def has_permission(role: Role, needed: str, *, scopes: frozenset[Permission] | None = None) -> bool:
    """The single check. `scopes` narrows an API key to some of its owner's permissions."""
    if needed == PUBLIC:
        return True
    if needed == AUTHENTICATED:
        return True
    granted = ROLE_PERMISSIONS[role]
    if scopes is not None:
        granted = granted & scopes
    return needed in granted


def is_staff(role: Role) -> bool:
    return role in STAFF_ROLES


def may_assign_role(actor: Role, *, current: Role, new: Role) -> bool:
    """Admins manage customers and editors; only a super_admin touches admin or above."""
    needed = (
        Permission.USERS_GRANT_ADMIN
        if Role.ADMIN in (current, new) or Role.SUPER_ADMIN in (current, new)
        else Permission.USERS_MANAGE
    )
    return has_permission(actor, needed)
