# ruff: noqa: S608 - SQL is built from placeholders and fixed fragments only, never input
"""Full-text search and listing of files, on PostgreSQL and on SQLite.

`File.search_text` is maintained by the documents service: the lower-cased words of the file's
name, tags, kind and the text facts of its current version (`build_search_text`). Migration 0007
indexes it: PostgreSQL with a GIN index on `to_tsvector('simple', search_text)`, SQLite with an
FTS5 table `files_fts` kept in sync by triggers.

A query is cut into words the same way (letters and digits; everything else separates), and
each word is matched as a prefix, all words required. Since only letters and digits reach the
query languages (FTS5 MATCH, `to_tsquery`), no input can be a syntax error or an injection.

`find_files` is the one listing query (folder, owner, tag, search, order, page), with the access
rule as SQL: live files the caller owns or is granted, or any for `files:read_any` staff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from core.principal import Principal
from db.models.files import File
from storage.file_access import may_read_any

_WORD = re.compile(r"[^\W_]+")
MAX_SEARCH_TEXT = 8000  # characters kept in search_text (a tsvector must stay under 1 MB)
MAX_QUERY_WORDS = 8
MAX_WORD = 64
MAX_FACT_DEPTH = 3


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits."""
    return [w[:MAX_WORD] for w in _WORD.findall(text.lower())]


def _fact_texts(value: Any, depth: int = 0) -> Iterable[str]:
    if depth > MAX_FACT_DEPTH:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _fact_texts(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value[:50]:
            yield from _fact_texts(item, depth + 1)


def build_search_text(
    *, name: str, tags: Iterable[str], kind: str, facts: Mapping[str, Any] | None = None
) -> str:
    """Distinct words of the name, tags, kind and text facts, in that order, bounded."""
    seen: dict[str, None] = {}
    sources = [name, *tags, kind, *_fact_texts(dict(facts or {}))]
    for source in sources:
        for word in words(source):
            seen.setdefault(word, None)
    text = " ".join(seen)
    if len(text) > MAX_SEARCH_TEXT:
        text = text[:MAX_SEARCH_TEXT].rsplit(" ", 1)[0]
    return text


def query_words(query: str) -> list[str]:
    found: dict[str, None] = {}
    for word in words(query):
        found.setdefault(word, None)
    return list(found)[:MAX_QUERY_WORDS]


def fts5_match(query: str) -> str | None:
    """An FTS5 MATCH expression: every word as a quoted prefix (`"bolt"* "m8"*`)."""
    found = query_words(query)
    return " ".join(f'"{w}"*' for w in found) if found else None


def pg_tsquery(query: str) -> str | None:
    """A `to_tsquery('simple', ...)` text: every word as a prefix (`bolt:* & m8:*`)."""
    found = query_words(query)
    return " & ".join(f"{w}:*" for w in found) if found else None


class FileOrder(StrEnum):
    NAME = "name"
    NAME_DESC = "-name"
    CREATED = "created_at"
    CREATED_DESC = "-created_at"
    UPDATED = "updated_at"
    UPDATED_DESC = "-updated_at"
    SIZE = "size"
    SIZE_DESC = "-size"


class FileScope(StrEnum):
    ALL = "all"  # every file the caller may read
    OWNED = "owned"  # the caller's own
    SHARED = "shared"  # granted to the caller by others


@dataclass(frozen=True)
class FileFilter:
    folder_id: UUID | None = None
    root_only: bool = False  # files outside any folder (of `owner_id`, or of the caller)
    owner_id: UUID | None = None
    tag: str | None = None
    query: str | None = None
    scope: FileScope = FileScope.ALL


@dataclass(frozen=True)
class FilePage:
    items: list[File]
    next_offset: int | None


class _Sql:
    """Collects parameters with the dialect's placeholder."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.values: list[Any] = []

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgres"

    def param(self, value: Any) -> str:
        if isinstance(value, UUID) and not self.postgres:
            value = str(value)
        self.values.append(value)
        return f"${len(self.values)}" if self.postgres else "?"


def _granted(user_placeholder: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM file_grants g "
        f"WHERE g.file_id = f.id AND g.user_id = {user_placeholder})"
    )


def _db() -> BaseDBAsyncClient:
    return File._meta.db


def dialect() -> str:
    return _db().capabilities.dialect


async def find_files(
    *,
    principal: Principal,
    where: FileFilter,
    order: FileOrder = FileOrder.NAME,
    limit: int = 50,
    offset: int = 0,
) -> FilePage:
    """One page of the files `where` selects among those the caller may read, in a stable order
    (the chosen column, then id)."""
    db = _db()
    sql = _Sql(db.capabilities.dialect)
    me = principal.user_id
    clauses = ["f.deleted_at IS NULL"]
    if where.scope is FileScope.OWNED:
        clauses.append(f"f.owner_id = {sql.param(me)}")
    elif where.scope is FileScope.SHARED:
        clauses.append(_granted(sql.param(me)))
    elif not may_read_any(principal):
        clauses.append(f"(f.owner_id = {sql.param(me)} OR {_granted(sql.param(me))})")
    if where.owner_id is not None:
        clauses.append(f"f.owner_id = {sql.param(where.owner_id)}")
    if where.folder_id is not None:
        clauses.append(f"f.folder_id = {sql.param(where.folder_id)}")
    elif where.root_only:
        clauses.append("f.folder_id IS NULL")
        if where.owner_id is None:
            clauses.append(f"f.owner_id = {sql.param(me)}")
    if where.tag is not None:
        if sql.postgres:
            clauses.append(f"f.tags ? {sql.param(where.tag)}")
        else:
            tag = sql.param(where.tag)
            clauses.append(f"EXISTS (SELECT 1 FROM json_each(f.tags) t WHERE t.value = {tag})")
    if where.query is not None:
        if sql.postgres:
            tsquery = pg_tsquery(where.query)
            if tsquery is None:
                return FilePage(items=[], next_offset=None)
            clauses.append(
                "to_tsvector('simple'::regconfig, f.search_text) @@ "
                f"to_tsquery('simple'::regconfig, {sql.param(tsquery)})"
            )
        else:
            match = fts5_match(where.query)
            if match is None:
                return FilePage(items=[], next_offset=None)
            clauses.append(
                f"f.id IN (SELECT file_id FROM files_fts WHERE files_fts MATCH {sql.param(match)})"
            )
    column = order.value.lstrip("-")
    direction = "DESC" if order.value.startswith("-") else "ASC"
    statement = (
        f"SELECT f.id AS id FROM files f WHERE {' AND '.join(clauses)} "
        f"ORDER BY f.{column} {direction}, f.id {direction} "
        f"LIMIT {sql.param(limit + 1)} OFFSET {sql.param(offset)}"
    )
    rows = await db.execute_query_dict(statement, sql.values)
    ids = [row["id"] if isinstance(row["id"], UUID) else UUID(str(row["id"])) for row in rows]
    more = len(ids) > limit
    ids = ids[:limit]
    by_id = {file.id: file for file in await File.filter(id__in=ids)}
    items = [by_id[i] for i in ids if i in by_id]
    return FilePage(items=items, next_offset=offset + limit if more else None)
