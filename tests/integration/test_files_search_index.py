"""Migration 0007's search index, both dialects: its reverse code removes it, its forward code
rebuilds it from the rows already there; and the access contract other parts code to
(`check_can_read`, `check_can_write`, `readable_file_ids`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection

from core.errors import NotFound
from core.permissions import Role
from core.principal import Principal
from db.config import connection_name
from db.connection import open_database
from db.models.files import File, FileGrant
from db.models.identity import User
from storage.documents import check_can_read, check_can_write, readable_file_ids
from storage.search import FileFilter, find_files

search_migration: Any = importlib.import_module("db.migrations.0007_files_search")


@dataclass
class _Editor:
    client: BaseDBAsyncClient


async def _has_index(client: BaseDBAsyncClient) -> bool:
    if client.capabilities.dialect == "sqlite":
        rows = await client.execute_query_dict(
            "SELECT name FROM sqlite_master WHERE name LIKE 'files_fts%'"
        )
    else:
        rows = await client.execute_query_dict(
            "SELECT indexname AS name FROM pg_indexes "
            "WHERE schemaname = current_schema() AND indexname = 'files_search_idx'"
        )
    return bool(rows)


async def test_search_index_down_and_up_again(migrated_database_url: str) -> None:
    async with open_database(migrated_database_url):
        client = get_connection(connection_name(migrated_database_url))
        user = await User.create(email="a@example.com")
        file = await File.create(owner=user, name="gear.step", search_text="gear step")
        me = Principal(user_id=user.id, role=Role.CUSTOMER)
        found = await find_files(principal=me, where=FileFilter(query="gear"))
        assert [f.id for f in found.items] == [file.id]

        await search_migration.backward(None, _Editor(client))
        assert await _has_index(client) is False
        await search_migration.backward(None, _Editor(client))  # idempotent

        await search_migration.forward(None, _Editor(client))
        assert await _has_index(client) is True
        found = await find_files(principal=me, where=FileFilter(query="gea"))
        assert [f.id for f in found.items] == [file.id]  # rows made before are indexed


async def test_access_contract(migrated_database_url: str) -> None:
    async with open_database(migrated_database_url):
        owner = await User.create(email="owner@example.com")
        other = await User.create(email="other@example.com")
        mine = await File.create(owner=owner, name="a")
        theirs = await File.create(owner=other, name="b")
        gone = await File.create(owner=owner, name="c", deleted_at=mine.created_at)
        customer = Principal(user_id=owner.id, role=Role.CUSTOMER)
        editor = Principal(user_id=other.id, role=Role.EDITOR)
        admin = Principal(user_id=other.id, role=Role.ADMIN)
        ids = [mine.id, theirs.id, gone.id]

        assert await readable_file_ids(customer, ids) == {mine.id}
        assert await readable_file_ids(editor, ids) == {mine.id, theirs.id}
        assert await readable_file_ids(customer, []) == set()
        assert (await check_can_read(customer, mine.id)).id == mine.id
        assert (await check_can_read(editor, mine.id)).id == mine.id
        assert (await check_can_write(admin, mine.id)).id == mine.id
        for principal, file_id, check in [
            (customer, theirs.id, check_can_read),
            (customer, gone.id, check_can_read),
            (editor, mine.id, check_can_write),
        ]:
            with pytest.raises(NotFound) as refused:
                await check(principal, file_id)
            assert refused.value.code == "file_not_found"

        await FileGrant.create(file=theirs, user=owner)
        assert await readable_file_ids(customer, ids) == {mine.id, theirs.id}
        assert (await check_can_read(customer, theirs.id)).id == theirs.id
        with pytest.raises(NotFound):
            await check_can_write(customer, theirs.id)  # a grant is read-only
