"""The Socket.IO gateway mounted in the app: token handshake, rooms, and fan-out across nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import KEYS, SETTINGS, SOCKETS
from core.clock import utcnow
from core.ids import new_id_str
from core.permissions import Role
from core.tokens import issue_access_token, signing_key
from db.connection import open_database
from db.models.identity import AuthSession
from hub.server import user_room
from tests.conftest import SettingsFactory
from tests.identity import sign_in

ServerFactory = Callable[..., Awaitable[TestServer]]


async def _token(server: TestServer, *, role: Role = Role.CUSTOMER) -> tuple[str, str]:
    """A real account with an open session; returns (user id, access token)."""
    account = await sign_in(server.app[SETTINGS].database_url, server.app[KEYS], role=role)
    return str(account.user_id), account.token


@pytest.fixture
async def clients() -> AsyncIterator[list[socketio.AsyncClient]]:
    made: list[socketio.AsyncClient] = []
    yield made
    for client in made:
        if client.connected:
            await client.disconnect()


async def _connect(
    made: list[socketio.AsyncClient], server: TestServer, token: str | None
) -> tuple[socketio.AsyncClient, asyncio.Queue[Any]]:
    client = socketio.AsyncClient(reconnection=False)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    client.on("notification", inbox.put)
    made.append(client)
    await client.connect(
        str(server.make_url("/")),
        auth={"token": token} if token is not None else None,
        transports=["websocket"],
        wait_timeout=5,
    )
    return client, inbox


async def _refusal(made: list[socketio.AsyncClient], server: TestServer, token: str | None) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    made.append(client)
    refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client.on("connect_error", refused.set_result)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            str(server.make_url("/")),
            auth={"token": token} if token is not None else None,
            transports=["websocket"],
            wait_timeout=5,
        )
    return await asyncio.wait_for(refused, 5)


@pytest.fixture
async def embedded_server(
    aiohttp_server: ServerFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> TestServer:
    return await aiohttp_server(create_app(make_settings(database_url=migrated_database_url)))


async def test_connect_without_a_token_is_refused(
    embedded_server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    error = await _refusal(clients, embedded_server, None)
    assert error == {"message": "An access token is required", "data": {"code": "unauthorized"}}


async def test_connect_with_an_expired_token_is_refused_as_expired(
    embedded_server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    key = embedded_server.app[KEYS].current
    token = issue_access_token(
        key=key,
        user_id=new_id_str(),
        role="customer",
        session_id=new_id_str(),
        now=utcnow() - timedelta(hours=1),
    )
    error = await _refusal(clients, embedded_server, token)
    assert error == {"message": "The access token has expired", "data": {"code": "token_expired"}}


async def test_connect_with_a_forged_token_is_refused(
    embedded_server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    forged = issue_access_token(
        key=signing_key("not-the-server-key-not-the-server-key"),
        user_id=new_id_str(),
        role="super_admin",
        session_id=new_id_str(),
    )
    assert (await _refusal(clients, embedded_server, forged))["data"] == {"code": "unauthorized"}


async def test_a_user_room_reaches_every_tab_of_that_user_only(
    embedded_server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    alice, alice_token = await _token(embedded_server)
    _, bob_token = await _token(embedded_server)
    _, tab1 = await _connect(clients, embedded_server, alice_token)
    _, tab2 = await _connect(clients, embedded_server, alice_token)
    _, other = await _connect(clients, embedded_server, bob_token)

    sio = embedded_server.app[SOCKETS]
    await sio.emit("notification", {"title": "hello"}, room=user_room(alice))

    assert await asyncio.wait_for(tab1.get(), 5) == {"title": "hello"}
    assert await asyncio.wait_for(tab2.get(), 5) == {"title": "hello"}
    await asyncio.sleep(0.05)
    assert other.empty()


async def test_a_revoked_session_cannot_connect(
    embedded_server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    account = await sign_in(embedded_server.app[SETTINGS].database_url, embedded_server.app[KEYS])
    async with open_database(embedded_server.app[SETTINGS].database_url):
        await AuthSession.filter(id=account.session_id).update(revoked_at=utcnow())
    error = await _refusal(clients, embedded_server, account.token)
    assert error["data"] == {"code": "session_revoked"}


async def test_staff_join_the_staff_room(
    embedded_server: TestServer, clients: list[socketio.AsyncClient]
) -> None:
    _, staff = await _connect(
        clients, embedded_server, (await _token(embedded_server, role=Role.EDITOR))[1]
    )
    _, customer = await _connect(clients, embedded_server, (await _token(embedded_server))[1])
    await embedded_server.app[SOCKETS].emit("notification", {"n": 1}, room="staff")
    assert await asyncio.wait_for(staff.get(), 5) == {"n": 1}
    await asyncio.sleep(0.05)
    assert customer.empty()


async def test_two_nodes_share_rooms_over_redis(
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    redis_url: str,
    redis_prefix: str,
    clients: list[socketio.AsyncClient],
) -> None:
    settings = make_settings(
        database_url=migrated_database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        secret_key="shared-secret-shared-secret-shared-secret",
    )
    node_a = await aiohttp_server(create_app(settings))
    node_b = await aiohttp_server(create_app(settings))
    carol, carol_token = await _token(node_b)
    _, on_b = await _connect(clients, node_b, carol_token)

    # The emitting node has no client in the room: delivery goes through Redis.
    sio_a = node_a.app[SOCKETS]

    async def emit_until_delivered() -> Any:
        # AsyncRedisManager subscribes when its listener starts; retry until both sides listen.
        while True:
            await sio_a.emit("notification", {"from": "node-a"}, room=user_room(carol))
            try:
                return await asyncio.wait_for(on_b.get(), 0.2)
            except TimeoutError:
                continue

    assert await asyncio.wait_for(emit_until_delivered(), 10) == {"from": "node-a"}
