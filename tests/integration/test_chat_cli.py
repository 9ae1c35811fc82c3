"""`ideinstein chat` from two terminals: a customer opens, an agent joins, lines cross."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from core.passwords import hash_password
from core.permissions import Role
from db.connection import open_database
from db.models.identity import User
from tests.conftest import SettingsFactory

ServerFactory = Callable[..., Awaitable[TestServer]]
PASSWORD = "terminal-chat-passphrase-9"


async def _terminal(url: str, email: str, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "chat",
        "--url",
        url,
        "--email",
        email,
        *extra,
        env={**os.environ, "IDEINSTEIN_PASSWORD": PASSWORD, "LOG_LEVEL": "WARNING"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _read_until(process: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        if not line:
            assert process.stderr is not None
            raise AssertionError((await process.stderr.read()).decode())
        if match := re.search(pattern, line):
            return match


@pytest.mark.databases("sqlite")
async def test_two_terminals_chat(
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    tmp_path: Path,
) -> None:
    server = await aiohttp_server(create_app(make_settings(database_url=migrated_database_url)))
    async with open_database(migrated_database_url):
        await User.create(email="customer@example.com", password_hash=hash_password(PASSWORD))
        await User.create(
            email="agent@example.com", password_hash=hash_password(PASSWORD), role=Role.EDITOR
        )
    url = str(server.make_url("")).rstrip("/")
    customer = await _terminal(url, "customer@example.com", "--subject", "Need a quote")
    conversation = (await _read_until(customer, r"conversation ([0-9a-f-]{36})")).group(1)
    agent = await _terminal(url, "agent@example.com", "--conversation", conversation)
    assert customer.stdin is not None
    assert agent.stdin is not None
    customer.stdin.write(b"Hello from terminal one\n")
    await customer.stdin.drain()
    await _read_until(agent, r"\[1\] \w+: Hello from terminal one")
    agent.stdin.write(b"Hi, terminal two here\n")
    await agent.stdin.drain()
    await _read_until(customer, r"\[2\] \w+: Hi, terminal two here")
    for process in (customer, agent):
        assert process.stdin is not None
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 15) == 0
