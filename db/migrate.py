"""Schema migrations with Tortoise's native migration engine (one set of files, both databases).

`apply_migrations` brings a database to the newest migration, `rollback_migrations` undoes the
newest N, `applied_migrations` lists what a database has, `make_migrations` writes a new file
from the model changes. Each opens its own ORM context, so it can run beside a live app.
"""

from __future__ import annotations

from pathlib import Path

from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as migrate_api
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.executor import MigrationExecutor, PlanStep

from db.config import APP_LABEL, connection_name, ensure_sqlite_directory, tortoise_config


async def _executor(database_url: str) -> MigrationExecutor:
    config = tortoise_config(database_url)
    return MigrationExecutor(get_connection(connection_name(database_url)), config["apps"])


async def applied_migrations(database_url: str) -> list[str]:
    """Names of the applied migrations, oldest first."""
    ensure_sqlite_directory(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(database_url))
        executor = await _executor(database_url)
        await executor.loader.build_graph()
        graph = executor.loader.graph
        applied = executor.loader.applied_migrations
        order = [key for leaf in graph.leaf_nodes(APP_LABEL) for key in graph.forwards_plan(leaf)]
        return [key.name for key in order if key in applied]


async def pending_migrations(database_url: str) -> list[str]:
    ensure_sqlite_directory(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(database_url))
        executor = await _executor(database_url)
        steps = await executor.plan(None)
        return [step.migration.name for step in steps if not step.backward]


async def apply_migrations(database_url: str) -> list[str]:
    """Apply every pending migration; returns the names applied, in order."""
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(name)

    ensure_sqlite_directory(database_url)
    async with TortoiseContext():
        await migrate_api(config=tortoise_config(database_url), progress=progress)
    return applied


async def rollback_migrations(database_url: str, *, steps: int = 1) -> list[str]:
    """Unapply the newest `steps` migrations; returns the names rolled back, newest first."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    done = await applied_migrations(database_url)
    if not done:
        return []
    keep = done[: max(len(done) - steps, 0)]
    target = f"{APP_LABEL}.{keep[-1]}" if keep else f"{APP_LABEL}.__first__"
    rolled_back: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "rollback_done":
            rolled_back.append(name)

    async with TortoiseContext():
        await migrate_api(
            config=tortoise_config(database_url),
            target=target,
            direction="backward",
            progress=progress,
        )
    return rolled_back


async def make_migrations(*, name: str | None = None) -> list[Path]:
    """Write migration files for model changes (compared with the files, not a database)."""
    config = tortoise_config("sqlite://:memory:")
    paths: list[Path] = []
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        assert ctx.apps is not None
        autodetector = MigrationAutodetector(ctx.apps, config["apps"])
        for writer in await autodetector.changes():
            if name:
                number = writer.name.split("_", 1)[0]
                writer.name = f"{number}_{name}"
            paths.append(Path(writer.write()))
    return paths


__all__ = [
    "PlanStep",
    "applied_migrations",
    "apply_migrations",
    "make_migrations",
    "pending_migrations",
    "rollback_migrations",
]
