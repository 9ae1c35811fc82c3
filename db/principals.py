"""Turn a presented credential into a `Principal`: the one check the API and the hub share.

A valid signature is not enough: the session must still be open (logout, a password reset or
a refresh-token reuse closes it) and the account active. The role is read from the database,
so a role change or a suspension takes effect at once, not when the token expires.

This runs on every authenticated request, so it is one hand-written query (`db.raw_sql`)
rather than a queryset: Tortoise's query building and model hydration cost more CPU than the
round trip itself. The token's signature
check is remembered per process (the claims never change); the session and the role are
read every time, so a logout, a revocation, a deactivation or a role change on any node
applies to the very next request.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from uuid import UUID

from core.clock import utcnow
from core.errors import Unauthorized
from core.permissions import Role
from core.principal import Principal
from core.tokens import AccessClaims, KeyRing, decode_access_token
from db.models.identity import AuthSession
from db.raw_sql import fetch_rows

VERIFIED_TOKENS = 4096  # access tokens whose signature this process remembers having checked

# The open session's expiry and its active user's role, or no row.
_SESSION_SQL = (
    'SELECT s."expires_at", u."role" FROM "auth_sessions" s '
    'JOIN "users" u ON u."id" = s."user_id" '
    'WHERE s."id" = $1 AND s."user_id" = $2 AND s."revoked_at" IS NULL AND u."is_active"'
)


@lru_cache(maxsize=VERIFIED_TOKENS)
def _verified_claims(token: str, keys: KeyRing) -> AccessClaims:
    """`decode_access_token`, remembered: checking the signature cost a request more CPU than
    its database query. Only tokens that passed are kept (a failure raises, and `lru_cache`
    keeps no exceptions), keyed by the key ring too, so a rotated-out key stops them. The
    claims are a function of the token alone; the expiry, which depends on the time, is
    checked by the caller on every use."""
    return decode_access_token(token, keys=keys)


def _expires_at(raw: object) -> datetime:
    """asyncpg returns an aware datetime; SQLite returns the text Tortoise wrote."""
    if isinstance(raw, datetime):
        return raw
    value: datetime = AuthSession._meta.fields_map["expires_at"].to_python_value(raw)
    return value


async def principal_from_access_token(token: str, *, keys: KeyRing) -> Principal:
    claims = _verified_claims(token, keys)
    if claims.expires_at <= utcnow():
        raise Unauthorized("token_expired", "The access token has expired")
    try:
        session_id = UUID(claims.session_id)
        user_id = UUID(claims.user_id)
    except ValueError:
        raise Unauthorized("unauthorized", "The access token is invalid") from None
    rows = await fetch_rows(AuthSession._meta.db, _SESSION_SQL, [session_id, user_id])
    if not rows or _expires_at(rows[0][0]) <= utcnow():
        raise Unauthorized("session_revoked", "This session has ended: sign in again")
    return Principal(user_id=user_id, role=Role(rows[0][1]), session_id=session_id)
