"""Fuzzing the Socket.IO gateway: Hypothesis-generated payloads for every client event (and
some unknown ones) from a connected client, against the real app. Every call gets an ack
(`ok` true, or an error with a code that is not `internal_error`), and the connection stays
up: nothing a client sends crashes a handler or the socket.

FUZZ_EXAMPLES (default 150) sets the number of calls.
"""

from __future__ import annotations

import asyncio
import os
import string
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.keys import KEYS, SETTINGS
from core.permissions import Role
from tests.conftest import SettingsFactory
from tests.identity import sign_in
from tests.sockets import HubClient

pytestmark = [pytest.mark.databases("sqlite"), pytest.mark.timeout(120)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
EVENTS = [
    "chat:open",
    "chat:send",
    "chat:typing",
    "chat:read",
    "chat:history",
    "chat:assign",
    "chat:status",
    "chat:queue",
    "sync",
    "notifications:ack",
    "presence:set",
    "presence:list",
    "subscribe",
    "unsubscribe",
    "dashboard:follow",
]
KEYS_SEEN = [
    "conversation_id",
    "client_msg_id",
    "body",
    "subject",
    "seq",
    "before_seq",
    "limit",
    "typing",
    "room",
    "rooms",
    "status",
    "assignee_id",
    "conversations",
    "notification_ids",
    "ids",
    "attachments",
    "user_ids",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what orjson (the hub's codec) encodes
    | st.floats(allow_nan=False)
    | st.text(max_size=80)
    | st.uuids().map(str)
    | st.sampled_from(["conversation:", "user:", "dashboard", "staff", "", "0", "-1"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(string.printable, max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
shaped = st.dictionaries(st.sampled_from(KEYS_SEEN), json_values, max_size=5)
payloads = shaped | json_values
events = st.sampled_from(EVENTS) | st.text(max_size=20)


def fuzz_socket(url: str, token: str) -> tuple[int, list[str]]:
    """Connect once (a loop of this thread's own), then send every generated call."""
    loop = asyncio.new_event_loop()
    client = HubClient()
    problems: list[str] = []
    calls = 0
    try:
        loop.run_until_complete(client.connect(url, token))

        @given(event=events, payload=payloads)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(event: str, payload: Any) -> None:
            if event in {"connect", "disconnect", "message"} or not event:
                return  # reserved names: python-socketio's client refuses to emit them
            nonlocal calls
            calls += 1
            ack = loop.run_until_complete(client.call(event, payload, timeout=10))
            if not isinstance(ack, dict) or "ok" not in ack:
                problems.append(f"{event} {payload!r}: not an ack: {ack!r}")
            elif not ack["ok"] and ack.get("error", {}).get("code") == "internal_error":
                problems.append(f"{event} {payload!r}: internal_error")
            if not client.sio.connected:
                problems.append(f"{event} {payload!r}: disconnected")
                raise AssertionError("disconnected")

        call()
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    return calls, problems


async def test_any_payload_gets_an_ack_and_keeps_the_socket(
    aiohttp_server: Any, make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    server: TestServer = await aiohttp_server(
        create_app(make_settings(database_url=migrated_database_url))
    )
    staff = await sign_in(server.app[SETTINGS].database_url, server.app[KEYS], role=Role.EDITOR)
    calls, problems = await asyncio.to_thread(fuzz_socket, str(server.make_url("/")), staff.token)
    assert calls > EXAMPLES // 2
    assert problems == []
