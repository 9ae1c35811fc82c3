"""Tortoise configuration from `DATABASE_URL`: SQLite in embedded mode, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tortoise.backends.base.config_generator import expand_db_url

APP_LABEL = "models"
MODEL_MODULES = [
    "db.models.identity",
    "db.models.chat",
    "db.models.push",
    "db.models.files",
    "db.models.render",
    "db.models.email",
    "db.models.commerce",
]
MIGRATIONS_MODULE = "db.migrations"

# asyncpg pool of each process. Tortoise's default (1 to 5) queues a busy node's requests
# behind five connections; a URL that names `minsize` or `maxsize` keeps its own choice.
# Mind PostgreSQL's max_connections (100 by default): hub nodes x maxsize, plus workers.
POOL_MINSIZE = 2
POOL_MAXSIZE = 20


def connection_name(database_url: str) -> str:
    """The connection's name is its dialect.

    Tortoise caches each model's compiled queries under the connection name, process-wide;
    were SQLite and PostgreSQL both called "default", whichever ran first would lend its
    placeholders to the other (a process that opens both: the tests, a data migration).
    """
    scheme = urlsplit(database_url).scheme
    return "postgres" if scheme in ("postgres", "postgresql") else scheme


def with_sqlite_pragmas(database_url: str) -> str:
    """Embedded SQLite runs in WAL mode (Tortoise's default) with `synchronous=NORMAL`: a
    commit is durable once it is in the WAL file; only a power loss or OS crash (not a crash
    of the process) can lose the last commits, and the database stays consistent either way.
    This saves an fsync per commit (one per chat message). A URL that names `synchronous`
    keeps its own choice (`?synchronous=FULL`)."""
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite" or "synchronous=" in parts.query:
        return database_url
    return database_url + ("&" if parts.query else "?") + "synchronous=NORMAL"


async def keep_session(connection: object) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own (which rolls back a
    transaction left open).

    asyncpg's default runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL;` each time a connection goes back to the pool: one more round trip per query
    (Tortoise takes a pooled connection per query), holding the connection meanwhile. Pooled
    connections here carry no session state to undo: nothing runs `SET`, `LISTEN`, session
    advisory locks (the tus upload locks have a connection of their own) or `WITH HOLD`
    cursors."""


def connection_config(database_url: str) -> str | dict[str, Any]:
    """What Tortoise is given for the connection: the URL, or for PostgreSQL its expanded
    form with the pool's size and reset."""
    if connection_name(database_url) != "postgres":
        return with_sqlite_pragmas(database_url)
    config = expand_db_url(database_url)
    credentials: dict[str, Any] = config["credentials"]
    maxsize = int(credentials.get("maxsize", POOL_MAXSIZE))
    credentials["maxsize"] = maxsize
    credentials["minsize"] = int(credentials.get("minsize", min(POOL_MINSIZE, maxsize)))
    credentials.setdefault("reset", keep_session)
    return config


def tortoise_config(database_url: str) -> dict[str, Any]:
    name = connection_name(database_url)
    return {
        "connections": {name: connection_config(database_url)},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": name,
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def ensure_sqlite_directory(database_url: str) -> None:
    """SQLite creates the file but not its folder: make `var/` on first start."""
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite":
        return
    path = parts.netloc + parts.path
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
