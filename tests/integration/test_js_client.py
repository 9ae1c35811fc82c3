"""The official JavaScript client (npm socket.io-client 4) connects, authenticates and chats."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import KEYS
from tests.conftest import SettingsFactory
from tests.identity import sign_in

JS = Path(__file__).resolve().parents[1] / "js"
ServerFactory = Callable[..., Awaitable[TestServer]]


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "socket.io-client").is_dir():
        message = "node and tests/js/node_modules are needed (npm ci --prefix tests/js)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return node


@pytest.mark.databases("sqlite")
async def test_the_javascript_client_chats(
    aiohttp_server: ServerFactory, make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    node = _node()
    server = await aiohttp_server(create_app(make_settings(database_url=migrated_database_url)))
    account = await sign_in(migrated_database_url, server.app[KEYS])
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS / "chat_client.mjs"),
        str(server.make_url("/")),
        account.token,
        "forged",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["refused"] == {
        "message": "The access token is invalid",
        "data": {"code": "unauthorized"},
    }
    assert result["opened"]["ok"] is True
    assert result["sent"]["message"]["seq"] == 1
    assert result["sent"]["message"]["body"] == "hello from the JS client"
    assert result["message"]["id"] == result["sent"]["message"]["id"]
    assert [m["client_msg_id"] for m in result["history"]["messages"]] == ["js-1"]
    assert result["transport"] == "websocket"  # upgraded from long-polling
