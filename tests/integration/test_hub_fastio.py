"""hub/fastio.py: the hub's tuned Socket.IO transport keeps the protocol: frames, order,
polling clients, no compression, orjson."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio
from aiohttp import ClientSession, WSMsgType
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import KEYS, SETTINGS, SOCKETS
from hub.fastio import FastSocket, orjson_module, websocket_frame
from hub.server import user_room
from tests.conftest import SettingsFactory
from tests.identity import sign_in

ServerFactory = Callable[..., Awaitable[TestServer]]


def test_frames_have_the_rfc6455_header_for_each_length() -> None:
    assert websocket_frame("42") == b"\x81\x02" + b"42"
    long = "x" * 200
    assert websocket_frame(long) == b"\x81\x7e" + struct.pack("!H", 200) + long.encode()
    huge = b"y" * 70_000
    assert websocket_frame(huge) == b"\x82\x7f" + struct.pack("!Q", 70_000) + huge
    assert websocket_frame("é") == b"\x81\x02" + "é".encode()  # length in bytes, not chars


def test_orjson_module_encodes_what_the_hub_sends() -> None:
    ident = uuid.uuid4()
    text = orjson_module.dumps({"id": ident, 1: "one", "body": "ü"}, separators=(",", ":"))
    assert orjson_module.loads(text) == {"id": str(ident), "1": "one", "body": "ü"}


@pytest.fixture
async def server(
    aiohttp_server: ServerFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> TestServer:
    return await aiohttp_server(create_app(make_settings(database_url=migrated_database_url)))


@pytest.fixture
async def clients() -> AsyncIterator[list[socketio.AsyncClient]]:
    made: list[socketio.AsyncClient] = []
    yield made
    for client in made:
        if client.connected:
            await client.disconnect()


async def _connect(
    made: list[socketio.AsyncClient], server: TestServer, token: str, transports: list[str]
) -> asyncio.Queue[Any]:
    client = socketio.AsyncClient(reconnection=False)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    client.on("notification", inbox.put)
    made.append(client)
    await client.connect(
        str(server.make_url("/")), auth={"token": token}, transports=transports, wait_timeout=5
    )
    return inbox


async def test_room_emits_arrive_complete_and_in_order_on_websocket_and_polling(
    server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    account = await sign_in(server.app[SETTINGS].database_url, server.app[KEYS])
    inboxes = [
        await _connect(clients, server, account.token, ["websocket"]),
        await _connect(clients, server, account.token, ["websocket"]),
        await _connect(clients, server, account.token, ["polling"]),
    ]
    sio = server.app[SOCKETS]
    assert all(type(s) is FastSocket for s in sio.eio.sockets.values())

    # given a burst, some of it written at once and some queued behind a busy writer
    for n in range(300):
        await sio.emit(
            "notification", {"n": n, "pad": "x" * (n * 97 % 3000)}, room=user_room(account.user_id)
        )

    for inbox in inboxes:
        got = [(await asyncio.wait_for(inbox.get(), 10))["n"] for _ in range(300)]
        assert got == list(range(300))
        assert inbox.empty()


async def test_the_websocket_is_not_compressed_even_when_the_client_offers_it(
    server: TestServer,
) -> None:
    url = server.make_url("/socket.io/").with_query(EIO="4", transport="websocket")
    async with ClientSession() as http, http.ws_connect(url, compress=15) as ws:
        opened = await ws.receive()
        assert opened.type is WSMsgType.TEXT
        assert opened.data.startswith("0{")
        assert ws.compress == 0
        assert "Sec-WebSocket-Extensions" not in ws._response.headers
