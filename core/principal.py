"""Who is calling: a signed-in user (through a session) or an API key acting for its owner."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from core.permissions import Permission, Role, has_permission, is_staff


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: UUID
    role: Role
    session_id: UUID | None = None
    api_key_id: UUID | None = None
    scopes: frozenset[Permission] | None = None  # an API key's; None = the role's own

    @property
    def is_staff(self) -> bool:
        return is_staff(self.role)

    def can(self, permission: str) -> bool:
        return has_permission(self.role, permission, scopes=self.scopes)
