"""Helpers for the tus tests: file bodies the real finisher accepts, a small tus client over
aiohttp, and a client that drops its connection in the middle of a PATCH."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from api.keys import METRICS

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def stl(size: int, seed: int = 0) -> bytes:
    """A binary STL of at least `size` bytes (84 + 50 per triangle) with distinct content."""
    triangles = max(1, -(-(size - 84) // 50))
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 2048
    body = (block * (triangles * 50 // len(block) + 1))[: triangles * 50]
    return f"tus test {seed}".encode().ljust(80, b" ") + struct.pack("<I", triangles) + body


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


@dataclass
class TusClient:
    """A minimal tus client over an aiohttp session (absolute or TestClient-relative URLs)."""

    session: Any  # aiohttp.ClientSession or aiohttp.test_utils.TestClient
    token: str
    base: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **TUS}

    def url(self, location: str) -> str:
        return self.base + location

    async def create(
        self,
        length: int | None,
        *,
        filename: str = "part.stl",
        extra: Mapping[str, str] | None = None,
        meta: str | None = None,
    ) -> str:
        headers = {**self.auth, "Upload-Metadata": meta or metadata(filename=filename)}
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        headers.update(extra or {})
        async with self.session.post(self.url("/api/v1/uploads/"), headers=headers) as response:
            assert response.status == 201, await response.text()
            location: str = response.headers["Location"]
            return location

    async def patch(
        self, location: str, offset: int, data: bytes, **headers: str
    ) -> aiohttp.ClientResponse:
        sent = {**self.auth, "Upload-Offset": str(offset), "Content-Type": OCTETS, **headers}
        body = io.BytesIO(data) if len(data) > 512 * 1024 else data  # aiohttp: no big bytes
        async with self.session.patch(self.url(location), data=body, headers=sent) as response:
            await response.read()
            return response  # type: ignore[no-any-return]

    async def head(self, location: str) -> aiohttp.ClientResponse:
        async with self.session.head(self.url(location), headers=self.auth) as response:
            return response  # type: ignore[no-any-return]

    async def offset(self, location: str) -> int:
        response = await self.head(location)
        assert response.status == 200, response.status
        return int(response.headers["Upload-Offset"])

    async def status(self, location: str) -> dict[str, Any]:
        async with self.session.get(self.url(location), headers=self.auth) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def resume(self, location: str, data: bytes, *, chunk: int = 1 << 20) -> dict[str, str]:
        """Send the rest of `data` from the server's offset (retrying 423 while the server
        still finishes an interrupted PATCH); the last response's headers."""
        while True:
            offset = await self.offset(location)
            response = await self.patch(location, offset, data[offset : offset + chunk])
            if response.status == 423:
                await asyncio.sleep(0.05)  # the other request releases the lock very soon
                continue
            assert response.status == 204, (response.status, response.headers)
            if int(response.headers["Upload-Offset"]) == len(data):
                return dict(response.headers)


async def patch_and_drop(
    base_url: str, location: str, token: str, *, offset: int, total: bytes, send: int
) -> None:
    """Start a PATCH announcing all of `total[offset:]`, send only `send` bytes of it, close."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    body = total[offset:]
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: {offset}\r\nContent-Type: {OCTETS}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:send])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader


def handled_patches(app: web.Application) -> int:
    """PATCH requests to an upload the app has finished handling (its request metrics)."""
    total = 0.0
    for family in app[METRICS].http_requests.collect():
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_total")
                and labels.get("method") == "PATCH"
                and labels.get("route") == "/api/v1/uploads/{upload_id}"
            ):
                total += sample.value
    return int(total)


async def wait_for_patches(app: web.Application, count: int) -> None:
    """Until the app has handled `count` PATCHes (a dropped one included)."""
    async with asyncio.timeout(10):
        while True:
            if handled_patches(app) >= count:
                return
            await asyncio.sleep(0.01)  # the dropped request's handler is still writing
