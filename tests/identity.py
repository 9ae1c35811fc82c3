"""Test helpers: accounts with open sessions, made straight in the database (no hashing cost)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from core.clock import utcnow
from core.ids import new_id_str
from core.permissions import Role
from core.tokens import KeyRing, issue_access_token
from db.connection import open_database
from db.models.identity import AuthSession, User


@dataclass(frozen=True)
class SignedIn:
    user_id: UUID
    session_id: UUID
    email: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_in(
    database_url: str, keys: KeyRing, *, role: Role = Role.CUSTOMER, email: str | None = None
) -> SignedIn:
    address = email or f"{role.value}-{new_id_str()[-12:]}@example.com"
    async with open_database(database_url):
        user = await User.create(email=address, role=role, email_verified_at=utcnow())
        session = await AuthSession.create(user=user, expires_at=utcnow() + timedelta(days=1))
    token = issue_access_token(
        key=keys.current, user_id=str(user.id), role=role.value, session_id=str(session.id)
    )
    return SignedIn(user_id=user.id, session_id=session.id, email=address, role=role, token=token)
