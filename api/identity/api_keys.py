"""API keys for third-party integrations: shown once, stored hashed, scoped, rotatable.

A key acts as its owner, narrowed to its scopes (never more than the owner's role allows).
Rotation issues a successor and leaves the old key working for a grace period, so an
integration can be switched over without downtime.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from api.identity.security_log import Client, SecurityKind, SecurityLog
from core.clock import utcnow
from core.errors import NotFound, Unauthorized, ValidationFailed
from core.permissions import Permission, permissions_of
from core.principal import Principal
from core.tokens import digest, new_opaque_token
from db.models.identity import ApiKey, User

KEY_PREFIX = "iek_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # how often a busy key's last use is written


@dataclass(frozen=True, slots=True)
class CreatedKey:
    row: ApiKey
    key: str


class ApiKeyService:
    def __init__(self, *, security_log: SecurityLog) -> None:
        self._log = security_log

    async def create(
        self, *, owner: Principal, name: str, scopes: list[Permission], client: Client
    ) -> CreatedKey:
        allowed = permissions_of(owner.role)
        refused = sorted(set(scopes) - allowed)
        if refused:
            raise ValidationFailed(
                "scope_not_allowed",
                "A key cannot have permissions its owner lacks",
                details={"scopes": refused},
            )
        created = await self._insert(owner.user_id, name, sorted(set(scopes)))
        await self._log.record(
            SecurityKind.API_KEY_CREATED,
            client=client,
            user_id=owner.user_id,
            data={"key_id": str(created.row.id), "prefix": created.row.prefix},
        )
        return created

    async def _insert(self, owner_id: UUID, name: str, scopes: list[str]) -> CreatedKey:
        prefix = secrets.token_hex(4)
        key = new_opaque_token(f"{KEY_PREFIX}{prefix}_")
        row = await ApiKey.create(
            owner_id=owner_id, name=name, prefix=prefix, key_hash=digest(key), scopes=scopes
        )
        return CreatedKey(row=row, key=key)

    async def list(self, *, owner: Principal) -> list[ApiKey]:
        return await ApiKey.filter(owner_id=owner.user_id).order_by("-created_at")

    async def _own(self, owner: Principal, key_id: UUID) -> ApiKey:
        row = await ApiKey.get_or_none(id=key_id, owner_id=owner.user_id)
        if row is None:
            raise NotFound("api_key_not_found", "No such API key")
        return row

    async def rotate(
        self, *, owner: Principal, key_id: UUID, grace: timedelta, client: Client
    ) -> CreatedKey:
        async with in_transaction():
            old = await ApiKey.filter(id=key_id, owner_id=owner.user_id).select_for_update().first()
            if old is None:
                raise NotFound("api_key_not_found", "No such API key")
            if old.revoked_at is not None:
                raise ValidationFailed("api_key_revoked", "A revoked key cannot be rotated")
            end = utcnow() + grace
            old.expires_at = min(old.expires_at, end) if old.expires_at else end
            await old.save(update_fields=["expires_at"])
            created = await self._insert(owner.user_id, old.name, list(old.scopes))
        await self._log.record(
            SecurityKind.API_KEY_ROTATED,
            client=client,
            user_id=owner.user_id,
            data={"key_id": str(old.id), "successor_id": str(created.row.id)},
        )
        return created

    async def revoke(self, *, owner: Principal, key_id: UUID, client: Client) -> None:
        row = await self._own(owner, key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            await row.save(update_fields=["revoked_at"])
            await self._log.record(
                SecurityKind.API_KEY_REVOKED,
                client=client,
                user_id=owner.user_id,
                data={"key_id": str(row.id)},
            )

    async def authenticate(self, *, key: str, client: Client) -> Principal:
        now = utcnow()
        row = (
            await ApiKey.filter(key_hash=digest(key), revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .select_related("owner")
            .first()
        )
        owner: User | None = row.owner if row is not None else None
        if row is None or owner is None or not owner.is_active:
            raise Unauthorized("invalid_api_key", "The API key is invalid, expired or revoked")
        new_ip = bool(row.last_used_ip) and row.last_used_ip != client.ip
        stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
        if stale or row.last_used_ip != client.ip:
            await ApiKey.filter(id=row.id).update(last_used_at=now, last_used_ip=client.ip[:64])
        if new_ip:
            await self._log.record(
                SecurityKind.API_KEY_NEW_IP,
                client=client,
                user_id=owner.id,
                data={"key_id": str(row.id), "previous_ip": row.last_used_ip},
            )
        scopes = frozenset(Permission(s) for s in row.scopes if s in Permission._value2member_map_)
        return Principal(user_id=owner.id, role=owner.role, api_key_id=row.id, scopes=scopes)
