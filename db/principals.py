"""Turn a presented credential into a `Principal`: the one check the API and the hub share.

A valid signature is not enough: the session must still be open (logout, a password reset or
a refresh-token reuse closes it) and the account active. The role is read from the database,
so a role change or a suspension takes effect at once, not when the token expires.
"""

from __future__ import annotations

from uuid import UUID

from core.clock import utcnow
from core.errors import Unauthorized
from core.principal import Principal
from core.tokens import KeyRing, decode_access_token
from db.models.identity import AuthSession


async def principal_from_access_token(token: str, *, keys: KeyRing) -> Principal:
    claims = decode_access_token(token, keys=keys)
    try:
        session_id = UUID(claims.session_id)
        user_id = UUID(claims.user_id)
    except ValueError:
        raise Unauthorized("unauthorized", "The access token is invalid") from None
    session = (
        await AuthSession.filter(
            id=session_id,
            user_id=user_id,
            revoked_at__isnull=True,
            expires_at__gt=utcnow(),
            user__is_active=True,
        )
        .select_related("user")
        .first()
    )
    if session is None:
        raise Unauthorized("session_revoked", "This session has ended: sign in again")
    return Principal(user_id=user_id, role=session.user.role, session_id=session_id)
