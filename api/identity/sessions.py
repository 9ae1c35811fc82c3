"""Sessions and their tokens: a short-lived access JWT plus a rotating opaque refresh token.

Each session is a family of refresh tokens. A refresh spends its token and issues the next one;
presenting a spent token again means it was stolen (or a client replayed it), so the whole
family is revoked and the security log says so (OAuth 2.0 Security BCP, refresh rotation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from tortoise.transactions import in_transaction

from api.identity.security_log import Client, SecurityKind, SecurityLog
from core.clock import utcnow
from core.errors import Unauthorized
from core.tokens import ACCESS_TOKEN_TTL, KeyRing, digest, issue_access_token, new_opaque_token
from db.models.identity import AuthSession, RefreshToken, User

SESSION_LIFETIME = timedelta(days=30)
REFRESH_TOKEN_TTL = timedelta(days=30)
REFRESH_PREFIX = "rt_"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: UUID
    user_id: UUID


class SessionService:
    def __init__(self, *, keys: KeyRing, security_log: SecurityLog) -> None:
        self._keys = keys
        self._log = security_log

    def _access_token(self, user: User, session_id: UUID) -> str:
        return issue_access_token(
            key=self._keys.current,
            user_id=str(user.id),
            role=user.role.value,
            session_id=str(session_id),
        )

    async def start(self, *, user: User, client: Client) -> TokenPair:
        now = utcnow()
        refresh = new_opaque_token(REFRESH_PREFIX)
        async with in_transaction():
            session = await AuthSession.create(
                user=user,
                expires_at=now + SESSION_LIFETIME,
                ip=client.ip[:64],
                user_agent=client.user_agent[:300],
            )
            await RefreshToken.create(
                session=session, token_hash=digest(refresh), expires_at=now + REFRESH_TOKEN_TTL
            )
        return TokenPair(
            access_token=self._access_token(user, session.id),
            refresh_token=refresh,
            expires_in=int(ACCESS_TOKEN_TTL.total_seconds()),
            session_id=session.id,
            user_id=user.id,
        )

    async def refresh(self, *, refresh_token: str, client: Client) -> TokenPair:
        now = utcnow()
        reused: RefreshToken | None = None
        new_refresh = new_opaque_token(REFRESH_PREFIX)
        async with in_transaction():
            # Lock the token row alone (PostgreSQL cannot lock the nullable side of a join);
            # concurrent refreshes of one token queue here and all but the first see it spent.
            token = (
                await RefreshToken.filter(token_hash=digest(refresh_token))
                .select_for_update()
                .first()
            )
            if token is None:
                raise Unauthorized("invalid_refresh_token", "Sign in again")
            session = await AuthSession.get(id=token.session_id).select_related("user")  # type: ignore[attr-defined]
            user = session.user
            if token.used_at is not None:
                reused = token
                if session.revoked_at is None:
                    session.revoked_at = now
                    session.revoke_reason = "refresh_reuse"
                    await session.save(update_fields=["revoked_at", "revoke_reason"])
            elif (
                session.revoked_at is not None
                or session.expires_at <= now
                or token.expires_at <= now
                or not user.is_active
            ):
                raise Unauthorized("invalid_refresh_token", "Sign in again")
            else:
                token.used_at = now
                await token.save(update_fields=["used_at"])
                await RefreshToken.create(
                    session=session,
                    token_hash=digest(new_refresh),
                    expires_at=min(now + REFRESH_TOKEN_TTL, session.expires_at),
                )
                session.last_used_at = now
                await session.save(update_fields=["last_used_at"])
        if reused is not None:
            await self._log.record(
                SecurityKind.REFRESH_REUSED,
                client=client,
                user_id=user.id,
                data={"session_id": str(session.id)},
            )
            raise Unauthorized("refresh_token_reused", "This sign-in was ended for safety")
        return TokenPair(
            access_token=self._access_token(user, session.id),
            refresh_token=new_refresh,
            expires_in=int(ACCESS_TOKEN_TTL.total_seconds()),
            session_id=session.id,
            user_id=user.id,
        )

    async def revoke_by_refresh_token(self, *, refresh_token: str, client: Client) -> None:
        token = (
            await RefreshToken.filter(token_hash=digest(refresh_token))
            .select_related("session")
            .first()
        )
        if token is None:
            return  # logging out twice, or with a token we never issued: nothing to do
        await self.revoke(session_id=token.session.id, reason="logout", client=client)

    async def revoke(self, *, session_id: UUID, reason: str, client: Client) -> None:
        updated = await AuthSession.filter(id=session_id, revoked_at__isnull=True).update(
            revoked_at=utcnow(), revoke_reason=reason
        )
        if updated and reason == "logout":
            session = await AuthSession.get(id=session_id)
            await self._log.record(
                SecurityKind.LOGOUT,
                client=client,
                user_id=session.user_id,  # type: ignore[attr-defined]
            )

    async def revoke_all(self, *, user_id: UUID, reason: str) -> int:
        count: int = await AuthSession.filter(user_id=user_id, revoked_at__isnull=True).update(
            revoked_at=utcnow(), revoke_reason=reason
        )
        return count
