"""Fuzzing the tus endpoint's headers: Hypothesis-generated Upload-Length, Upload-Offset,
Upload-Metadata, Upload-Concat, Upload-Defer-Length, Upload-Checksum and Tus-Resumable values
on creation and on PATCH, against the real app. Never a 5xx; a refused request writes nothing
(no new upload bytes on disk, no file, the upload's offset unchanged).

FUZZ_EXAMPLES (default 100) sets the number of examples of each test.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.keys import KEYS
from core.permissions import Role
from tests.conftest import SettingsFactory
from tests.identity import sign_in
from tests.tus import OCTETS, TUS, metadata

pytestmark = [pytest.mark.databases("sqlite"), pytest.mark.timeout(120)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
LENGTH = 64

numbers = st.one_of(
    st.integers(min_value=-5, max_value=2**70).map(str),
    st.sampled_from(["", " 1", "1 ", "+1", "0x10", "1e3", "01", "-0", "NaN", "1.5", "٣"]),
    st.text(max_size=12),
)
b64 = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())
metadata_values = st.one_of(
    st.lists(st.tuples(st.text(max_size=10), st.one_of(b64, st.text(max_size=10))), max_size=4).map(
        lambda pairs: ",".join(f"{k} {v}".strip() for k, v in pairs)
    ),
    st.just(metadata(filename="part.stl")),
    st.text(max_size=40),
)
concat = st.one_of(
    st.sampled_from(["partial", "final;", "final", "partial;x"]),
    st.lists(st.text(max_size=20), max_size=3).map(lambda p: "final;" + " ".join(p)),
    st.text(max_size=30),
)
checksum = st.one_of(
    st.tuples(st.sampled_from(["sha1", "sha256", "md5", "crc32", ""]), b64).map(" ".join),
    st.text(max_size=40),
)
resumable = st.sampled_from(["1.0.0", "1.0.0", "1.0.0", "0.2.2", "", "1.0"])


def _optional(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(st.just({}), values.map(lambda v: {name: v}))


def _headers(*parts: st.SearchStrategy[dict[str, str]]) -> st.SearchStrategy[dict[str, str]]:
    def merge(dicts: tuple[dict[str, str], ...]) -> dict[str, str]:
        merged: dict[str, str] = {}
        for d in dicts:
            merged.update(d)
        return {k: v for k, v in merged.items() if "\n" not in v and "\r" not in v}

    return st.tuples(*parts).map(merge)


create_headers = _headers(
    resumable.map(lambda v: {"Tus-Resumable": v}),
    _optional("Upload-Length", numbers),
    _optional("Upload-Defer-Length", numbers),
    _optional("Upload-Metadata", metadata_values),
    _optional("Upload-Concat", concat),
    _optional("Upload-Checksum", checksum),
)
patch_headers = _headers(
    resumable.map(lambda v: {"Tus-Resumable": v}),
    _optional("Upload-Offset", numbers),
    _optional("Upload-Length", numbers),
    _optional("Upload-Checksum", checksum),
    st.sampled_from([OCTETS, OCTETS, "application/octet-stream", ""]).map(
        lambda v: {"Content-Type": v}
    ),
)


def _written(var_dir: Path) -> dict[str, int]:
    """Every file the app wrote (blobs, upload parts), but the database's own files."""
    return {
        str(p.relative_to(var_dir)): p.stat().st_size
        for p in var_dir.rglob("*")
        if p.is_file() and ".db" not in p.name and not p.name.endswith(".pem")
    }


def _clean(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return all(c.isprintable() for c in value)


def fuzz_tus(url: str, token: str, var_dir: Path) -> list[str]:
    loop = asyncio.new_event_loop()
    problems: list[str] = []
    auth = {"Authorization": f"Bearer {token}"}

    async def request(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        async with (
            aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session,
            session.request(method, target, headers={**auth, **headers}, data=body) as response,
        ):
            await response.read()
            return response

    async def files() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/api/v1/files", headers=auth) as response,
        ):
            assert response.status == 200
            return len((await response.json())["items"])

    async def offset(location: str) -> int | None:
        response = await request("HEAD", location, TUS, b"")
        return int(response.headers["Upload-Offset"]) if response.status == 200 else None

    try:
        created = loop.run_until_complete(
            request(
                "POST",
                f"{url}/api/v1/uploads/",
                {
                    **TUS,
                    "Upload-Length": str(LENGTH),
                    "Upload-Metadata": metadata(filename="a.txt"),
                },
                b"",
            )
        )
        assert created.status == 201
        target = url + created.headers["Location"]
        known = {"files": 0}  # files listed after the last accepted request

        @given(headers=create_headers, body=st.binary(max_size=80))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def create(headers: dict[str, str], body: bytes) -> None:
            headers = {k: v for k, v in headers.items() if _clean(v)}
            if body:
                headers.setdefault("Content-Type", OCTETS)
            before = _written(var_dir)
            response = loop.run_until_complete(
                request("POST", f"{url}/api/v1/uploads/", headers, body)
            )
            if response.status >= 500:
                problems.append(f"create {headers} {body!r}: {response.status}")
            elif response.status >= 400:
                if (
                    _written(var_dir) != before
                    or loop.run_until_complete(files()) != known["files"]
                ):
                    problems.append(f"create {headers}: refused {response.status} but wrote")
            else:
                known["files"] = loop.run_until_complete(files())

        @given(headers=patch_headers, body=st.binary(max_size=LENGTH + 16))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def patch(headers: dict[str, str], body: bytes) -> None:
            headers = {k: v for k, v in headers.items() if _clean(v)}
            at = loop.run_until_complete(offset(target))
            response = loop.run_until_complete(request("PATCH", target, headers, body))
            if response.status >= 500:
                problems.append(f"patch {headers} {body!r}: {response.status}")
            elif response.status >= 400 and response.status != 404:
                if loop.run_until_complete(offset(target)) != at:
                    problems.append(f"patch {headers}: refused {response.status}, offset moved")
                if loop.run_until_complete(files()) != known["files"]:
                    problems.append(f"patch {headers}: refused {response.status}, file made")
            else:
                known["files"] = loop.run_until_complete(files())

        create()
        patch()
    finally:
        loop.close()
    return problems


async def test_random_tus_headers_are_refused_cleanly(
    aiohttp_server: Any, make_settings: SettingsFactory, migrated_database_url: str, var_dir: Path
) -> None:
    server: TestServer = await aiohttp_server(
        create_app(make_settings(database_url=migrated_database_url))
    )
    # staff: twice a customer's API budget (1,200 a minute) for the ~4 requests per example
    account = await sign_in(migrated_database_url, server.app[KEYS], role=Role.EDITOR)
    problems = await asyncio.to_thread(
        fuzz_tus, str(server.make_url("")).rstrip("/"), account.token, var_dir
    )
    assert problems == []
