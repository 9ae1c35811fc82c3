"""Staff alerts: `inventory.low_stock` on the bus becomes an inbox notification for each active
staff member who manages the catalog (the router then takes it to push and email)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import BUS, KEYS, SETTINGS
from core.bus import Event
from core.permissions import Role
from db.connection import open_database
from db.models.chat import Notification
from db.models.identity import User
from tests.identity import sign_in


async def test_low_stock_reaches_every_catalog_manager_once(client: TestClient[Any, Any]) -> None:
    database_url = client.app[SETTINGS].database_url
    editor = await sign_in(database_url, client.app[KEYS], role=Role.EDITOR)
    admin = await sign_in(database_url, client.app[KEYS], role=Role.ADMIN)
    customer = await sign_in(database_url, client.app[KEYS])
    gone = await sign_in(database_url, client.app[KEYS], role=Role.EDITOR)
    async with open_database(database_url):
        await User.filter(id=gone.user_id).update(is_active=False)
    created: asyncio.Queue[Event] = asyncio.Queue()

    async def record(event: Event) -> None:
        await created.put(event)

    await client.app[BUS].subscribe("notification.created", record)

    await client.app[BUS].emit(
        "inventory.low_stock",
        {"variant_id": "v-1", "sku": "BRKT-42", "on_hand": 2, "available": 1, "threshold": 2},
    )

    told = {(await asyncio.wait_for(created.get(), 5)).data["user_id"] for _ in range(2)}
    assert told == {str(editor.user_id), str(admin.user_id)}
    async with open_database(database_url):
        rows = await Notification.filter(type="inventory.low_stock").order_by("title")
        assert {r.user_id for r in rows} == {editor.user_id, admin.user_id}  # type: ignore[attr-defined]
        assert rows[0].title == "Low stock: BRKT-42"
        assert rows[0].body == "1 available (2 on hand), threshold 2"
        assert await Notification.filter(user_id=customer.user_id).count() == 0
