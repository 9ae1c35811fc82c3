"""User administration: list and search, suspend, change roles, within the role rules."""

from __future__ import annotations

from uuid import UUID

from tortoise.expressions import Q

from api.identity.security_log import Client, SecurityKind, SecurityLog
from api.identity.sessions import SessionService
from core.errors import Forbidden, NotFound, ValidationFailed
from core.permissions import Permission, Role, has_permission, may_assign_role
from core.principal import Principal
from db.models.identity import User

MAX_PAGE = 200


class AdminService:
    def __init__(self, *, sessions: SessionService, security_log: SecurityLog) -> None:
        self._sessions = sessions
        self._log = security_log

    async def list_users(
        self,
        *,
        query: str | None,
        role: Role | None,
        active: bool | None,
        after: UUID | None,
        limit: int,
    ) -> tuple[list[User], UUID | None]:
        """Oldest first, keyset-paged on the (time-ordered) id."""
        rows = User.all()
        if query:
            rows = rows.filter(Q(email__icontains=query) | Q(display_name__icontains=query))
        if role is not None:
            rows = rows.filter(role=role)
        if active is not None:
            rows = rows.filter(is_active=active)
        if after is not None:
            rows = rows.filter(id__gt=after)
        limit = max(1, min(limit, MAX_PAGE))
        page = await rows.order_by("id").limit(limit + 1)
        next_cursor = page[limit - 1].id if len(page) > limit else None
        return page[:limit], next_cursor

    async def _target(self, actor: Principal, user_id: UUID) -> User:
        if user_id == actor.user_id:
            raise ValidationFailed("cannot_change_self", "Ask another administrator")
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise NotFound("user_not_found", "No such user")
        return user

    async def set_suspended(
        self, *, actor: Principal, user_id: UUID, suspended: bool, client: Client
    ) -> User:
        user = await self._target(actor, user_id)
        if user.role in (Role.ADMIN, Role.SUPER_ADMIN) and not has_permission(
            actor.role, Permission.USERS_GRANT_ADMIN
        ):
            raise Forbidden("forbidden", "Only a super admin may suspend an administrator")
        if user.is_active == (not suspended):
            return user
        user.is_active = not suspended
        await user.save(update_fields=["is_active", "updated_at"])
        if suspended:
            await self._sessions.revoke_all(user_id=user.id, reason="suspended")
        await self._log.record(
            SecurityKind.SUSPENDED if suspended else SecurityKind.REACTIVATED,
            client=client,
            user_id=user.id,
            actor_id=actor.user_id,
        )
        return user

    async def change_role(
        self, *, actor: Principal, user_id: UUID, role: Role, client: Client
    ) -> User:
        user = await self._target(actor, user_id)
        if not may_assign_role(actor.role, current=user.role, new=role):
            raise Forbidden("forbidden", "Only a super admin may grant or remove admin rights")
        if user.role == role:
            return user
        previous = user.role
        user.role = role
        await user.save(update_fields=["role", "updated_at"])
        await self._log.record(
            SecurityKind.ROLE_CHANGED,
            client=client,
            user_id=user.id,
            actor_id=actor.user_id,
            data={"from": previous.value, "to": role.value},
        )
        return user
