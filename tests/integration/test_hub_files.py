"""The hub's file features on the real databases: `file:<id>` rooms open only to those who may
read the file, render and scan events relayed into them, and chat attachments that reference
files (checked, snapshotted, and shared with the conversation's customer)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import BUS, KEYS, SETTINGS
from core.permissions import Role
from db.connection import open_database
from db.models.chat import Message
from db.models.files import File, FileGrant
from tests.conftest import SettingsFactory
from tests.identity import SignedIn, sign_in
from tests.sockets import HubClient

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def server(
    aiohttp_server: ServerFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> TestServer:
    return await aiohttp_server(create_app(make_settings(database_url=migrated_database_url)))


@pytest.fixture
async def clients() -> AsyncIterator[list[HubClient]]:
    made: list[HubClient] = []
    yield made
    for client in made:
        await client.close()


async def _account(server: TestServer, role: Role = Role.CUSTOMER) -> SignedIn:
    return await sign_in(server.app[SETTINGS].database_url, server.app[KEYS], role=role)


async def _connect(server: TestServer, clients: list[HubClient], who: SignedIn) -> HubClient:
    client = HubClient()
    clients.append(client)
    return await client.connect(str(server.make_url("/")), who.token)


async def _file(server: TestServer, owner: SignedIn, name: str = "bracket.stl") -> File:
    async with open_database(server.app[SETTINGS].database_url):
        return await File.create(
            owner_id=owner.user_id, name=name, current_version=1, size=684, kind="stl",
            mime_type="model/stl",
        )  # fmt: skip


async def test_file_room_is_open_to_the_owner_and_staff_and_relays_render_progress(
    server: TestServer, clients: list[HubClient]
) -> None:
    owner, stranger, staff = (
        await _account(server),
        await _account(server),
        await _account(server, Role.EDITOR),
    )
    file = await _file(server, owner)
    room = f"file:{file.id}"
    owner_socket = await _connect(server, clients, owner)
    staff_socket = await _connect(server, clients, staff)
    stranger_socket = await _connect(server, clients, stranger)

    assert (await owner_socket.call("subscribe", {"room": room}))["ok"] is True
    assert (await staff_socket.call("subscribe", {"room": room}))["ok"] is True
    refused = await stranger_socket.call("subscribe", {"room": room})
    assert refused == {"ok": False, "error": {"code": "unknown_room", "message": "No such room"}}
    bad = await stranger_socket.call("subscribe", {"room": "file:not-a-uuid"})
    assert bad["error"]["code"] == "unknown_room"

    data = {
        "job_id": str(uuid.uuid4()),
        "file_id": str(file.id),
        "version_id": str(uuid.uuid4()),
        "progress": 40,
        "stage": "rendering",
    }
    await server.app[BUS].emit("render.progress", data)
    assert await owner_socket.next("render:progress") == data
    assert await staff_socket.next("render:progress") == data
    await server.app[BUS].emit(
        "file.scanned",
        {"file_id": str(file.id), "version": 1, "status": "clean", "signature": None},
    )
    scanned = await owner_socket.next("file:scanned")
    assert scanned["status"] == "clean"
    assert stranger_socket.pending("render:progress") == []
    assert stranger_socket.pending("file:scanned") == []


async def test_the_owner_hears_of_renders_without_watching_the_file(
    server: TestServer, clients: list[HubClient]
) -> None:
    owner = await _account(server)
    file = await _file(server, owner)
    owner_socket = await _connect(server, clients, owner)
    watching = await _connect(server, clients, owner)
    assert (await watching.call("subscribe", {"room": f"file:{file.id}"}))["ok"] is True
    data = {
        "job_id": str(uuid.uuid4()),
        "file_id": str(file.id),
        "owner_id": str(owner.user_id),
        "version_id": str(uuid.uuid4()),
        "outputs": {},
        "metadata": {},
    }

    await server.app[BUS].emit("render.completed", data)

    assert await owner_socket.next("render:completed") == data
    assert await watching.next("render:completed") == data  # in both rooms, told once
    await server.app[BUS].emit("render.failed", {**data, "error_code": "timeout"})
    assert (await watching.next("render:failed"))["error_code"] == "timeout"
    assert watching.pending("render:completed") == []


async def test_a_deleted_file_has_no_room(server: TestServer, clients: list[HubClient]) -> None:
    owner = await _account(server)
    file = await _file(server, owner)
    async with open_database(server.app[SETTINGS].database_url):
        await File.filter(id=file.id).update(deleted_at=file.created_at)
    socket = await _connect(server, clients, owner)
    ack = await socket.call("subscribe", {"room": f"file:{file.id}"})
    assert ack["error"]["code"] == "unknown_room"


async def test_staff_attachment_is_snapshotted_and_shared_with_the_customer(
    server: TestServer, clients: list[HubClient]
) -> None:
    customer, staff = await _account(server), await _account(server, Role.EDITOR)
    drawing = await _file(server, staff, name="offer-drawing.pdf")
    customer_socket = await _connect(server, clients, customer)
    staff_socket = await _connect(server, clients, staff)
    opened = await customer_socket.call("chat:open", {"subject": "Quote"})
    conversation_id = opened["conversation"]["id"]
    assert (await staff_socket.call("subscribe", {"room": f"conversation:{conversation_id}"}))["ok"]

    ack = await staff_socket.call(
        "chat:send",
        {
            "conversation_id": conversation_id,
            "client_msg_id": "a-1",
            "body": "Here is the drawing",
            "attachments": [{"file_id": str(drawing.id)}],
        },
    )

    assert ack["ok"] is True, ack
    expected = {
        "file_id": str(drawing.id),
        "name": "offer-drawing.pdf",
        "size": 684,
        "mime_type": "model/stl",
        "kind": "stl",
        "version": 1,
    }
    assert ack["message"]["attachments"] == [expected]
    received = await customer_socket.until("chat:message", lambda m: m["client_msg_id"] == "a-1")
    assert received["attachments"] == [expected]
    async with open_database(server.app[SETTINGS].database_url):
        grant = await FileGrant.get(file_id=drawing.id, user_id=customer.user_id)
    assert grant.granted_by_id == staff.user_id  # type: ignore[attr-defined]
    # The customer may now watch the file's room (its render progress).
    watch = await customer_socket.call("subscribe", {"room": f"file:{drawing.id}"})
    assert watch["ok"] is True


async def test_attaching_a_file_the_sender_cannot_read_writes_nothing(
    server: TestServer, clients: list[HubClient]
) -> None:
    customer, other = await _account(server), await _account(server)
    foreign = await _file(server, other, name="secret.step")
    socket = await _connect(server, clients, customer)
    opened = await socket.call("chat:open", {"subject": "Quote"})
    conversation_id = opened["conversation"]["id"]
    missing = str(uuid.uuid4())

    ack = await socket.call(
        "chat:send",
        {
            "conversation_id": conversation_id,
            "client_msg_id": "x-1",
            "body": "look",
            "attachments": [{"file_id": str(foreign.id)}, {"file_id": missing}],
        },
    )

    assert ack["ok"] is False
    assert ack["error"]["code"] == "attachment_not_found"
    malformed = await socket.call(
        "chat:send",
        {
            "conversation_id": conversation_id,
            "client_msg_id": "x-2",
            "body": "look",
            "attachments": [{"url": "http://evil.example"}],
        },
    )
    assert malformed["ok"] is False
    async with open_database(server.app[SETTINGS].database_url):
        assert await Message.filter(conversation_id=conversation_id).count() == 0
        assert await FileGrant.filter(file_id=foreign.id).count() == 0


async def test_rest_send_checks_attachments_too(server: TestServer) -> None:
    customer = await _account(server)
    own = await _file(server, customer, name="mine.stl")
    foreign = await _file(server, await _account(server), name="theirs.stl")
    headers = customer.headers
    http = server.app  # noqa: F841 (the server fixture owns the app)
    import aiohttp

    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as session:
        async with session.post(
            "/api/v1/conversations", json={"subject": "Files"}, headers=headers
        ) as response:
            conversation_id = (await response.json())["conversation"]["id"]
        url = f"/api/v1/conversations/{conversation_id}/messages"
        async with session.post(
            url,
            json={
                "client_msg_id": "r-1",
                "body": "two",
                "attachments": [{"file_id": str(foreign.id)}],
            },
            headers=headers,
        ) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "attachment_not_found"
        async with session.post(
            url,
            json={"client_msg_id": "r-2", "body": "one", "attachments": [{"file_id": str(own.id)}]},
            headers=headers,
        ) as response:
            assert response.status == 201
            body = await response.json()
    assert body["message"]["attachments"][0]["name"] == "mine.stl"
