"""One writer per upload across hub processes, and the temporary-disk budget.

A PATCH streams for as long as the client sends, so the lock must not be a row lock in an open
transaction (our own offset updates would wait on it, and it would pin a pooled connection per
upload). Instead:

- PostgreSQL: a session-level advisory lock per upload (`pg_try_advisory_lock`), taken on one
  dedicated connection per process. It never waits (a second writer gets 423 at once), and
  PostgreSQL releases it when that connection ends: a killed process leaves no stale lock, so a
  client can resume on another node or the restarted one right away. Advisory locks are
  re-entrant within a session, so a set of the ids this process holds comes first.
- SQLite (the embedded, single-process mode): that set alone.

The temporary-disk budget is checked and reserved inside one transaction that first takes a
transaction-level advisory lock (`pg_advisory_xact_lock`, one key for the whole budget) on
PostgreSQL; on SQLite, Tortoise runs transactions one at a time on its single connection. The
sum and the reservation are therefore never interleaved with another reservation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg  # type: ignore[import-untyped]
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from core.logs import get_logger
from db.config import connection_name
from db.models.files import Upload, UploadState
from storage.tus_protocol import UploadBudgetExceeded, UploadLocked

log = get_logger(__name__)

BUDGET_LOCK_KEY = 0x7475_7362_7564_6774  # "tusbudgt"


def advisory_key(upload_id: UUID) -> int:
    return int.from_bytes(upload_id.bytes[:8], "big", signed=True)


def is_postgres(database_url: str) -> bool:
    return connection_name(database_url) == "postgres"


async def check_budget(
    connection: BaseDBAsyncClient,
    *,
    need: int,
    exclude: UUID | None,
    budget: int,
    postgres: bool,
) -> None:
    """Raise 507 unless `need` more bytes fit in the budget beside what the other active
    uploads hold. Call inside the transaction that then writes the reservation: the budget
    lock it takes first is held until that transaction ends."""
    if postgres:
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [BUDGET_LOCK_KEY])
    query = Upload.filter(state=UploadState.ACTIVE).using_db(connection)
    if exclude is not None:
        query = query.exclude(id=exclude)
    totals = await query.annotate(total=Sum("reserved_bytes")).values_list("total", flat=True)
    used = int(totals[0] or 0) if totals else 0  # type: ignore[arg-type]
    if used + need > budget:
        raise UploadBudgetExceeded(details={"budget_bytes": budget, "reserved_bytes": used})


async def reserve(row: Upload, total: int, *, budget: int, postgres: bool) -> None:
    """Hold `total` bytes of the temporary-disk budget for this upload (grows only)."""
    if total <= row.reserved_bytes:
        return
    async with in_transaction() as connection:
        await check_budget(connection, need=total, exclude=row.id, budget=budget, postgres=postgres)
        await Upload.filter(id=row.id).using_db(connection).update(reserved_bytes=total)
    row.reserved_bytes = total


class UploadLocks:
    def __init__(self, database_url: str) -> None:
        postgres = is_postgres(database_url)
        self._postgres_url = _plain_postgres_url(database_url) if postgres else None
        self._held: set[UUID] = set()
        self._connection: Any = None  # asyncpg.Connection
        self._guard = asyncio.Lock()  # one query at a time on the lock connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def acquire(self, upload_id: UUID) -> bool:
        """Take the upload's lock if free; False if another request (here or elsewhere) has it."""
        if upload_id in self._held:
            return False
        self._held.add(upload_id)
        try:
            if self._postgres_url is not None and not await self._query(
                "SELECT pg_try_advisory_lock($1)", advisory_key(upload_id)
            ):
                self._held.discard(upload_id)
                return False
        except BaseException:
            self._held.discard(upload_id)
            raise
        return True

    async def release(self, upload_id: UUID) -> None:
        try:
            if self._postgres_url is not None and upload_id in self._held:
                await self._query("SELECT pg_advisory_unlock($1)", advisory_key(upload_id))
        except (OSError, asyncpg.PostgresError) as exc:  # the session is gone: so is the lock
            log.warning("tus.unlock_failed", upload_id=str(upload_id), error=str(exc))
        finally:
            self._held.discard(upload_id)

    @asynccontextmanager
    async def hold(self, upload_id: UUID) -> AsyncIterator[None]:
        """The upload's lock for the block, or `UploadLocked` (423) at once."""
        if not await self.acquire(upload_id):
            raise UploadLocked()
        try:
            yield
        finally:
            await asyncio.shield(self.release(upload_id))

    async def _query(self, sql: str, key: int) -> bool:
        async with self._guard:
            if self._connection is None or self._connection.is_closed():
                # A new session: locks the old one held are gone (the writers holding them
                # finish, a second writer may start meanwhile: see the report's caveat).
                self._connection = await asyncpg.connect(self._postgres_url)
            result = await self._connection.fetchval(sql, key)
            return bool(result)


def _plain_postgres_url(database_url: str) -> str:
    """asyncpg takes the URL without Tortoise's own query options (`schema`, pool sizes);
    advisory locks are per database, not per schema."""
    parts = urlsplit(database_url)
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))
