"""Serving a blob over HTTP: ETag (the sha256, strong), If-None-Match (304), single Range
(206, 416), If-Range, Content-Disposition, and either streaming (local store: read in worker
threads, from the range's first byte) or a 302 to the store's presigned URL (S3).

Callers authorise first, then `plan_download` (what will be answered), then `send_download`.
The split lets a share link count a download only when bytes (or the redirect) go out.

Cache policy: per-user downloads are `private, no-cache` (kept by the browser, revalidated
with the ETag); content-addressed URLs (a blob named by its sha256, e.g. previews) may use
`IMMUTABLE` (`private, max-age=31536000, immutable`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import BinaryIO

from aiohttp import hdrs, web
from pydantic import BaseModel

from core.errors import AppError, NotFound
from core.logs import get_logger
from storage.blobs import BlobStore
from storage.blobs.base import READ_SIZE, content_disposition
from storage.blobs.local import LocalBlobStore, open_for_reading

log = get_logger(__name__)

PRESIGNED_TTL = 300  # seconds a redirect URL to the store stays valid
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# OpenAPI for a download route: bytes (whole or a range), the store's redirect, or not modified.
DOWNLOAD_RESPONSES: dict[int, type[BaseModel] | None] = {200: None, 206: None, 302: None, 304: None}
DOWNLOAD_CONTENT_TYPES = {200: "application/octet-stream", 206: "application/octet-stream"}


class CachePolicy(StrEnum):
    PRIVATE = "private, no-cache"
    # Content-addressed and behind authorization: the browser keeps it for ever, shared caches
    # (proxies, CDNs) never do, since another user's request must pass the check again.
    IMMUTABLE = "private, max-age=31536000, immutable"


class RangeNotSatisfiable(AppError):
    status = 416
    default_code = "range_not_satisfiable"
    default_message = "The requested range is outside the file"

    @property
    def headers(self) -> dict[str, str]:
        return {hdrs.CONTENT_RANGE: f"bytes */{self.details.get('size', 0)}"}


@dataclass(frozen=True)
class BlobDownload:
    key: str  # sha256 hex
    size: int
    mime_type: str
    filename: str | None


class PlanKind(Enum):
    FULL = 200
    PARTIAL = 206
    NOT_MODIFIED = 304
    REDIRECT = 302


@dataclass(frozen=True)
class DownloadPlan:
    kind: PlanKind
    start: int = 0
    length: int = 0
    url: str | None = None

    @property
    def transfers(self) -> bool:
        """Bytes (or the way to them) go out: what a download limit counts."""
        return self.kind is not PlanKind.NOT_MODIFIED


def etag_of(blob: BlobDownload) -> str:
    return f'"{blob.key}"'


def _matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: `W/` prefixes are ignored."""
    candidates = [c.strip() for c in header.split(",")]
    return any(c == "*" or c.removeprefix("W/") == etag for c in candidates)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`(start, length)` of a single `bytes=` range; None when the header is to be ignored
    (malformed or several ranges: the whole file is sent). Raises `RangeNotSatisfiable`."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(details={"size": size})
        start = max(size - suffix, 0)
        return start, size - start
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(details={"size": size})
    end = min(end, size - 1)
    return start, end - start + 1


async def plan_download(request: web.Request, store: BlobStore, blob: BlobDownload) -> DownloadPlan:
    """What to answer: a redirect when the store has direct URLs, else 304, 206 or 200 (or
    `RangeNotSatisfiable`)."""
    url = await store.url(blob.key, expires=PRESIGNED_TTL, filename=blob.filename)
    if url is not None:
        return DownloadPlan(kind=PlanKind.REDIRECT, url=url)
    etag = etag_of(blob)
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None and _matches(if_none_match, etag):
        return DownloadPlan(kind=PlanKind.NOT_MODIFIED)
    range_header = request.headers.get(hdrs.RANGE)
    if range_header is not None and request.method in (hdrs.METH_GET, hdrs.METH_POST):
        if_range = request.headers.get(hdrs.IF_RANGE)
        if if_range is None or if_range.strip() == etag:  # If-Range: strong comparison
            found = parse_range(range_header, blob.size)
            if found is not None:
                return DownloadPlan(kind=PlanKind.PARTIAL, start=found[0], length=found[1])
    return DownloadPlan(kind=PlanKind.FULL, start=0, length=blob.size)


async def send_download(
    request: web.Request,
    store: BlobStore,
    blob: BlobDownload,
    plan: DownloadPlan,
    *,
    cache: CachePolicy = CachePolicy.PRIVATE,
) -> web.StreamResponse:
    if plan.kind is PlanKind.REDIRECT:
        assert plan.url is not None
        return web.Response(
            status=302,
            headers={hdrs.LOCATION: plan.url, hdrs.CACHE_CONTROL: "private, no-store"},
        )
    headers = {
        hdrs.ETAG: etag_of(blob),
        hdrs.CACHE_CONTROL: cache.value,
        hdrs.ACCEPT_RANGES: "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    if plan.kind is PlanKind.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = blob.mime_type or "application/octet-stream"
    headers[hdrs.CONTENT_DISPOSITION] = content_disposition(blob.filename)
    headers[hdrs.CONTENT_LENGTH] = str(plan.length)
    if plan.kind is PlanKind.PARTIAL:
        end = plan.start + plan.length - 1
        headers[hdrs.CONTENT_RANGE] = f"bytes {plan.start}-{end}/{blob.size}"
    if not await store.exists(blob.key):  # checked before the status line goes out
        raise NotFound("blob_not_found", "The file's content is missing from the store")
    response = web.StreamResponse(status=plan.kind.value, headers=headers)
    await response.prepare(request)
    if request.method == hdrs.METH_HEAD or plan.length == 0:
        await response.write_eof()
        return response
    try:
        async with aclosing(_read_range(store, blob.key, plan.start, plan.length)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:  # the client went away mid-download: nothing to answer
        log.info("download.client_gone", key=blob.key)
    return response


async def _read_range(
    store: BlobStore, key: str, start: int, length: int
) -> AsyncGenerator[bytes, None]:
    if isinstance(store, LocalBlobStore):
        async with aclosing(_read_file_range(store.path_of(key), start, length)) as chunks:
            async for chunk in chunks:
                yield chunk
        return
    # A store without seek: skip to the range (no such store serves here today: S3 redirects).
    position = 0
    end = start + length
    async with aclosing(await store.open(key)) as chunks:
        async for chunk in chunks:
            piece_start, piece_end = position, position + len(chunk)
            position = piece_end
            if piece_end <= start:
                continue
            yield chunk[max(start - piece_start, 0) : min(end, piece_end) - piece_start]
            if position >= end:
                break


async def _read_file_range(path: Path, start: int, length: int) -> AsyncGenerator[bytes, None]:
    file: BinaryIO = await open_for_reading(path)  # closed even if cancelled while opening
    try:
        await asyncio.to_thread(file.seek, start)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(READ_SIZE, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(file.close)
