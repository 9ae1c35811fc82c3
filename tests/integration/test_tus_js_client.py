"""The official tus JavaScript client (npm tus-js-client 4) uploads a file, is aborted part way
and resumes from the upload URL; the file version has the right bytes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import pytest
from aiohttp.test_utils import TestServer

from api.app import create_app
from api.keys import BLOBS, KEYS
from db.connection import open_database
from db.models.files import FileVersion
from tests.conftest import SettingsFactory
from tests.identity import sign_in
from tests.tus import sha256, stl

JS = Path(__file__).resolve().parents[1] / "js"
ServerFactory = Callable[..., Awaitable[TestServer]]


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "tus-js-client").is_dir():
        message = "node and tests/js/node_modules are needed (npm ci --prefix tests/js)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return node


@pytest.mark.databases("sqlite")
async def test_tus_js_client_uploads_and_resumes(
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    tmp_path: Path,
) -> None:
    node = _node()
    server = await aiohttp_server(create_app(make_settings(database_url=migrated_database_url)))
    account = await sign_in(migrated_database_url, server.app[KEYS])
    data = stl(600 * 1024, seed=42)
    path = tmp_path / "housing.stl"
    path.write_bytes(data)

    process = await asyncio.create_subprocess_exec(
        node,
        str(JS / "tus_upload.mjs"),
        str(server.make_url("/")),
        account.token,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["methods"][0] == "POST"
    assert "HEAD" in result["methods"]
    assert 3 * 64 * 1024 <= result["resumedFrom"] < len(data)
    assert result["fileVersion"] == "1"
    async with open_database(migrated_database_url):
        version = await FileVersion.get(file_id=UUID(result["fileId"]))
    assert (version.blob_key, version.size, version.original_name) == (
        sha256(data),
        len(data),
        "housing.stl",
    )
    assert await server.app[BLOBS].exists(sha256(data))
