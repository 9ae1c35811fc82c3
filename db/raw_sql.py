"""Hand-written queries for both databases: written once with PostgreSQL's `$n` placeholders,
run on SQLite with `?` and UUIDs as the text Tortoise stores them. For the few hot queries
where Tortoise's query building and model hydration cost more than the round trip."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=64)
def _for_sqlite(sql: str) -> tuple[str, tuple[int, ...]]:
    """The statement with `?` placeholders, and which value each one takes (0-based)."""
    order = tuple(int(n) - 1 for n in _PLACEHOLDER.findall(sql))
    return _PLACEHOLDER.sub("?", sql), order


async def fetch_rows(connection: BaseDBAsyncClient, sql: str, values: Sequence[Any]) -> list[Any]:
    """Run `sql` (with `$1`, `$2` ... placeholders) on `connection`; its rows."""
    if connection.capabilities.dialect == "postgres":
        _, rows = await connection.execute_query(sql, list(values))
        return list(rows)
    statement, order = _for_sqlite(sql)
    _, rows = await connection.execute_query(
        statement, [str(v) if isinstance(v, UUID) else v for v in (values[i] for i in order)]
    )
    return list(rows)
