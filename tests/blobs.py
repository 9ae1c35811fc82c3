"""Helpers shared by the blob store tests: byte streams and reading a blob back."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing

from storage.blobs import BlobStore

CHUNK = 64 * 1024


class StreamBrokeError(Exception):
    """Raised by `failing_stream` in the middle of the bytes."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ from one seed to another and are not all one value."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def stream(data: bytes, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def repeated(block: bytes, count: int) -> AsyncIterator[bytes]:
    """`count` times the same block: a big stream that costs no memory to make."""
    for _ in range(count):
        yield block


async def failing_stream(data: bytes, fail_after: int) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in stream(data):
        if sent >= fail_after:
            raise StreamBrokeError("the client went away")
        sent += len(chunk)
        yield chunk


def repeated_digest(block: bytes, count: int) -> str:
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(block)
    return digest.hexdigest()


async def read_all(store: BlobStore, key: str) -> bytes:
    async with aclosing(await store.open(key)) as chunks:
        return b"".join([chunk async for chunk in chunks])


def pieces(data: bytes, count: int) -> Iterable[bytes]:
    size = -(-len(data) // count)
    return [data[i : i + size] for i in range(0, len(data), size)]
