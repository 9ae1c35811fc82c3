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
from api.keys import DATABASE, KEYS, SETTINGS, SOCKETS
from hub.fastio import FastSocket, SlimQueue, SocketIOFirst, orjson_module, websocket_frame
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


async def test_slim_queue_keeps_order_task_counts_and_wakes_its_getter() -> None:
    queue = SlimQueue()
    assert queue.empty()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    await queue.put("b")
    assert await asyncio.wait_for(getter, 1) == "a"
    assert queue.qsize() == 1
    assert queue.get_nowait() == "b"
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    joined = asyncio.create_task(queue.join())
    await asyncio.sleep(0)
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()  # one of the two is still unfinished
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many"):
        queue.task_done()


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


async def _raw_socket(http: ClientSession, server: TestServer, token: str) -> Any:
    """A bare websocket that does the Socket.IO handshake and nothing else (no task of its
    own, no pongs unless the test sends them)."""
    url = server.make_url("/socket.io/").with_query(EIO="4", transport="websocket")
    ws = await http.ws_connect(url)
    opened = await ws.receive()
    assert opened.data.startswith("0{")
    await ws.send_str("40" + orjson_module.dumps({"token": token}))
    joined = await ws.receive()
    assert joined.data.startswith("40{"), joined.data
    return ws


async def test_an_idle_websocket_keeps_no_task_but_aiohttp_s(server: TestServer) -> None:
    account = await sign_in(server.app[SETTINGS].database_url, server.app[KEYS])
    sio = server.app[SOCKETS]
    async with ClientSession() as http:
        first = await _raw_socket(http, server, account.token)  # the ping wheel starts
        before = asyncio.all_tasks()
        sockets = [await _raw_socket(http, server, account.token) for _ in range(5)]

        # aiohttp's two per connection (the connection's and its request handler's), none
        # per socket for writing or pinging, once the handshake's own tasks have finished
        expected = ["RequestHandler._handle_request"] * 5 + ["RequestHandler.start"] * 5

        def new_tasks() -> list[str]:
            tasks = asyncio.all_tasks() - before - {asyncio.current_task()}
            names = (getattr(t.get_coro(), "__qualname__", "") for t in tasks)
            return sorted(n for n in names if n != "Event.wait")  # Engine.IO's service task

        async def settled() -> None:
            while new_tasks() != expected:  # noqa: ASYNC110 - nothing to wait on; bounded
                await asyncio.sleep(0.02)

        await asyncio.wait_for(settled(), 5)
        await sio.emit("notification", {"n": 1}, room=user_room(account.user_id))
        for ws in [first, *sockets]:
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.data == '42["notification",{"n":1}]'
        for ws in [first, *sockets]:
            await ws.close()


async def test_pings_keep_a_live_peer_and_drop_one_that_stops_answering(
    server: TestServer,
) -> None:
    account = await sign_in(server.app[SETTINGS].database_url, server.app[KEYS])
    sio = server.app[SOCKETS]
    sio.eio.ping_interval = 0.3
    sio.eio.ping_timeout = 0.5
    async with ClientSession() as http:
        live = await _raw_socket(http, server, account.token)
        mute = await _raw_socket(http, server, account.token)
        assert len(sio.eio.sockets) == 2

        # the mute peer never answers: closed after its ping times out
        async def answer_pings() -> int:
            pings = 0
            while True:
                message = await live.receive()
                if message.type is not WSMsgType.TEXT:
                    return pings
                if message.data == "2":
                    pings += 1
                    await live.send_str("3")

        answering = asyncio.create_task(answer_pings())
        message = await asyncio.wait_for(mute.receive(), 5)
        assert message.data == "2"  # the ping it leaves unanswered
        while message.type is WSMsgType.TEXT:
            message = await asyncio.wait_for(mute.receive(), 5)
        assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)

        async def one_socket_left() -> None:
            while len(sio.eio.sockets) != 1:  # noqa: ASYNC110 - no event to wait on; bounded
                await asyncio.sleep(0.02)

        await asyncio.wait_for(one_socket_left(), 5)
        # the live one answered several pings meanwhile and is still connected
        await sio.emit("notification", {"n": 2}, room=user_room(account.user_id))
        await asyncio.sleep(1.0)
        assert not answering.done()
        await live.close()
        assert await asyncio.wait_for(answering, 5) >= 3


async def test_socketio_first_routes_sockets_around_the_middlewares_only(
    server: TestServer,
) -> None:
    account = await sign_in(server.app[SETTINGS].database_url, server.app[KEYS])
    assert server.runner is not None
    web_server = server.runner.server
    assert web_server is not None
    web_server.request_handler = SocketIOFirst(
        server.app[SOCKETS], web_server.request_handler, enter=server.app[DATABASE].make_current
    )
    async with ClientSession() as http:
        url = server.make_url("/socket.io/").with_query(EIO="4", transport="websocket")
        async with http.ws_connect(url) as ws:
            # no middleware ran: no request id, no security headers on the 101
            assert "X-Request-ID" not in ws._response.headers
            await ws.receive()
            await ws.send_str("40" + orjson_module.dumps({"token": account.token}))
            joined = await asyncio.wait_for(ws.receive(), 5)
            assert joined.data.startswith("40{")  # authenticated against the database
        polling = server.make_url("/socket.io/").with_query(EIO="4", transport="polling")
        async with http.get(polling) as opened:
            assert opened.status == 200
            assert opened.headers["X-Content-Type-Options"] == "nosniff"
            assert opened.headers["Cache-Control"] == "no-store"
        async with http.get(server.make_url("/healthz")) as response:
            assert response.status == 200
            assert "X-Request-ID" in response.headers  # the rest still goes through them
