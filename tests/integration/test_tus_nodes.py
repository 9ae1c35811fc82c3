"""Two hub nodes on one PostgreSQL database: one writer per upload across processes (the
advisory lock dies with its holder's session) and a temporary-disk budget that concurrent
creations on both nodes cannot overrun."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.keys import KEYS, SETTINGS, UPLOADS
from db.models.files import Upload
from tests.conftest import SettingsFactory
from tests.identity import sign_in
from tests.tus import TUS, TusClient, stl

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
KB = 1024

pytestmark = pytest.mark.databases("postgres")


@pytest.fixture
async def nodes(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
    settings = make_settings(database_url=migrated_database_url, upload_temp_budget_bytes=100 * KB)
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    return first, second


async def test_an_upload_being_written_on_one_node_is_locked_on_the_other(
    nodes: tuple[TestClient[Any, Any], TestClient[Any, Any]], database_kind: str
) -> None:
    first, second = nodes
    account = await sign_in(first.app[SETTINGS].database_url, first.app[KEYS])
    data = stl(50 * KB, seed=1)
    on_first, on_second = TusClient(first, account.token), TusClient(second, account.token)
    location = await on_first.create(len(data))
    upload_id = UUID(location.rpartition("/")[2])
    assert await first.app[UPLOADS].locks.acquire(upload_id)  # a PATCH in flight on node 1

    locked = await on_second.patch(location, 0, data[:1000])
    assert locked.status == 423
    assert await on_second.offset(location) == 0
    await first.app[UPLOADS].locks.close()  # node 1 dies: PostgreSQL ends its session

    resumed = await on_second.patch(location, 0, data)
    assert resumed.status == 204
    assert resumed.headers["X-File-Version"] == "1"


async def test_concurrent_creations_on_two_nodes_never_overrun_the_budget(
    nodes: tuple[TestClient[Any, Any], TestClient[Any, Any]], database_kind: str
) -> None:
    account = await sign_in(nodes[0].app[SETTINGS].database_url, nodes[0].app[KEYS])
    headers = {**TUS, "Authorization": f"Bearer {account.token}", "Upload-Length": str(30 * KB)}

    async def create(n: int) -> int:
        response = await nodes[n % 2].post("/api/v1/uploads/", headers=headers)
        return response.status

    statuses = await asyncio.gather(*(create(n) for n in range(12)))

    assert sorted(statuses) == [201] * 3 + [507] * 9
    assert await Upload.all().count() == 3
    assert sum(u.reserved_bytes for u in await Upload.all()) == 90 * KB
