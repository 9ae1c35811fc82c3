"""Open and close the ORM: one `Database` per app, `open_database` for one-off commands.

Tortoise 1.x keeps its state in a `TortoiseContext` found through a context variable. An app
owns one context (several apps, e.g. two hub nodes in one test process, never share one) and
makes it current for each request and for the tasks its start-up creates; nothing global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from tortoise.connection import get_connection
from tortoise.context import TortoiseContext, _current_context

from db.config import connection_name, ensure_sqlite_directory, tortoise_config


class Database:
    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.context = TortoiseContext()

    @contextmanager
    def activated(self) -> Iterator[None]:
        """This database is current inside the block (and in tasks started there).

        `with TortoiseContext:` keeps one reset token on the context object, so two requests
        inside it at once would reset each other's; each entry here keeps its own token.
        """
        token = _current_context.set(self.context)
        try:
            yield
        finally:
            _current_context.reset(token)

    async def open(self) -> None:
        ensure_sqlite_directory(self.url)
        with self.activated():
            await self.context.init(config=tortoise_config(self.url))

    def make_current(self) -> None:
        """Make this database current here and in every task started from here on.

        Used once at start-up: the context variable is then inherited by the server and the
        background tasks it starts. Requests also enter it explicitly (see the middleware).
        """
        _current_context.set(self.context)

    async def close(self) -> None:
        with self.activated():
            await self.context.close_connections()

    async def ping(self) -> None:
        """Raise if the database does not answer a trivial query."""
        with self.activated():
            await get_connection(connection_name(self.url)).execute_query("SELECT 1")


@asynccontextmanager
async def open_database(database_url: str) -> AsyncIterator[TortoiseContext]:
    """The ORM for the duration of a block (command line, scripts, tests)."""
    ensure_sqlite_directory(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=tortoise_config(database_url))
        yield ctx
