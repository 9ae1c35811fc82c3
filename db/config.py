"""Tortoise configuration from `DATABASE_URL`: SQLite in embedded mode, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def connection_name(database_url: str) -> str:
    """The connection's name is its dialect.

    Tortoise caches each model's compiled queries under the connection name, process-wide;
    were SQLite and PostgreSQL both called "default", whichever ran first would lend its
    placeholders to the other (a process that opens both: the tests, a data migration).
    """
    scheme = urlsplit(database_url).scheme
    return "postgres" if scheme in ("postgres", "postgresql") else scheme


def tortoise_config(database_url: str) -> dict[str, Any]:
    name = connection_name(database_url)
    return {
        "connections": {name: database_url},
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
