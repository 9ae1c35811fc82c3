"""The same migration files on SQLite and on the real PostgreSQL: up from empty, one step down."""

from __future__ import annotations

from pathlib import Path

from tortoise.connection import get_connection

from db.config import connection_name
from db.connection import open_database
from db.migrate import (
    applied_migrations,
    apply_migrations,
    make_migrations,
    pending_migrations,
    rollback_migrations,
)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "db" / "migrations"


def _files() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.py"))


async def _tables(database_url: str) -> set[str]:
    async with open_database(database_url):
        conn = get_connection(connection_name(database_url))
        if database_url.startswith("sqlite"):
            rows = await conn.execute_query_dict(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
            return {row["name"] for row in rows}
        rows = await conn.execute_query_dict(
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
        return {row["name"] for row in rows}


async def test_upgrade_from_empty_then_downgrade_one_step(database_url: str) -> None:
    files = _files()
    assert files, "no migration files found"
    assert await pending_migrations(database_url) == files

    assert await apply_migrations(database_url) == files
    assert await applied_migrations(database_url) == files
    assert await pending_migrations(database_url) == []
    assert "users" in await _tables(database_url)
    assert await apply_migrations(database_url) == []  # idempotent

    assert await rollback_migrations(database_url, steps=1) == [files[-1]]
    assert await applied_migrations(database_url) == files[:-1]
    if len(files) == 1:
        assert "users" not in await _tables(database_url)

    assert await apply_migrations(database_url) == [files[-1]]
    assert await applied_migrations(database_url) == files


async def test_rolling_back_an_empty_database_does_nothing(database_url: str) -> None:
    assert await rollback_migrations(database_url, steps=3) == []


async def test_models_and_migrations_agree() -> None:
    """A model change without its migration file fails here, not in production."""
    before = set(MIGRATIONS_DIR.iterdir())
    created = await make_migrations()
    for path in created:
        path.unlink()
    assert created == [], "models changed without a migration: run `ideinstein makemigrations`"
    assert set(MIGRATIONS_DIR.iterdir()) == before
