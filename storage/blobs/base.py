"""The blob seam: content-addressed storage of file bytes, keyed by their sha256.

A blob is written once and never changed: its key is the sha256 hex of its bytes, so identical
content is stored once. Bytes arrive as a stream (`put_stream`) or in pieces over several
requests (`begin_upload`, `append`..., `complete` or `abort`, the shape tus needs). Hashing is
incremental, per batch of chunks, in a worker thread: nothing ever holds a whole file.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
# Chunks are gathered into batches of this size before a worker thread writes and hashes them:
# one thread hop per MiB instead of one per (often 64 KiB) network chunk.
BATCH_SIZE = 1024 * 1024
READ_SIZE = 256 * 1024


class BlobError(Exception):
    """Base of the blob store's errors."""


class BlobNotFoundError(BlobError):
    """No blob has this key."""


class InvalidKeyError(BlobError, ValueError):
    """The key is not a lowercase sha256 hex digest."""


class UploadClosedError(BlobError):
    """The upload was already completed or aborted, or belongs to another store."""


@dataclass(frozen=True)
class StoredBlob:
    key: str  # sha256 hex of the content
    size: int


@dataclass(eq=False)
class UploadHandle:
    """An upload in progress. Backends subclass it with their own state; callers read `size`
    (the offset the next piece starts at) and `upload_id`. A handle lives in this process
    (its sha256 state cannot be saved), and its pieces must be appended one at a time.

    `export_state` gives what another process needs to go on with it (`resume_upload`);
    `digest_valid` is False when a resumed handle could not rebuild the running sha256 (S3:
    the bytes already sent as parts), so `complete` hashes the assembled object instead."""

    upload_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    size: int = 0
    closed: bool = False
    digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    pending: bytearray = field(default_factory=bytearray, repr=False)
    digest_valid: bool = True


def check_key(key: str) -> str:
    """Return `key` if it is a sha256 hex digest; raise `InvalidKeyError` otherwise (a key is
    part of a path or object name: nothing else may pass)."""
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidKeyError(f"not a sha256 hex key: {key!r}")
    return key


def content_disposition(filename: str | None) -> str:
    """`attachment` with an ASCII fallback name and the exact one in RFC 5987 form."""
    if not filename:
        return "attachment"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class BlobStore(abc.ABC):
    """Content-addressed blob storage. Use as `async with store:` (opens and closes clients).

    Subclasses implement the upload session (`begin_upload`, `_write`, `complete`, `abort`)
    and the reads; `put_stream` and `append` are built on them here.
    """

    async def start(self) -> None:  # noqa: B027 (optional hook: most stores have nothing)
        """Open long-lived resources (clients); the default has none."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Close what `start` opened."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def put_stream(
        self, chunks: AsyncIterator[bytes], *, size_hint: int | None = None
    ) -> StoredBlob:
        """Store a whole stream; on any failure (or cancellation) nothing is left behind."""
        handle = await self.begin_upload(size_hint=size_hint)
        try:
            await self.append(handle, chunks)
            return await self.complete(handle)
        except BaseException:
            await asyncio.shield(self.abort(handle))  # idempotent
            raise

    async def append(self, handle: UploadHandle, chunks: AsyncIterator[bytes]) -> int:
        """Add a piece to an upload; return the upload's size after it. If the stream fails
        midway, the bytes that did arrive stay in the upload (tus resumes from `size`)."""
        self._check_open(handle)
        try:
            async for chunk in chunks:
                handle.pending += chunk
                handle.size += len(chunk)
                if len(handle.pending) >= BATCH_SIZE:
                    await self._flush(handle)
        finally:
            if handle.pending:
                await asyncio.shield(self._flush(handle))
        return handle.size

    async def _flush(self, handle: UploadHandle) -> None:
        data, handle.pending = handle.pending, bytearray()
        try:
            await self._write(handle, data)
        except BaseException:
            handle.closed = True  # its bytes and `size` no longer agree: only abort is left
            raise

    def _check_open(self, handle: UploadHandle) -> None:
        if handle.closed:
            raise UploadClosedError(f"upload {handle.upload_id} is closed")

    @abc.abstractmethod
    async def begin_upload(self, *, size_hint: int | None = None) -> UploadHandle:
        """Start an upload that will arrive in pieces."""

    @abc.abstractmethod
    async def _write(self, handle: UploadHandle, data: bytearray) -> None:
        """Persist a batch of an upload's bytes and feed them to `handle.digest` (in a thread:
        hashlib releases the GIL on large buffers)."""

    @abc.abstractmethod
    def export_state(self, handle: UploadHandle) -> dict[str, Any]:
        """What `resume_upload` needs to go on with this upload in another process (after a
        restart): a JSON-able dict. Valid between appends (nothing pending)."""

    @abc.abstractmethod
    async def resume_upload(self, state: dict[str, Any]) -> UploadHandle:
        """A handle for an upload another process (or an earlier run) began, from its
        `export_state`. Its `size` is the number of bytes durably there, which may exceed what
        the caller last recorded (bytes that arrived just before a crash). Raises
        `UploadClosedError` when nothing of the upload is left."""

    @abc.abstractmethod
    async def discard_upload(self, state: dict[str, Any]) -> None:
        """Drop an upload known only by its exported state (expiry of an upload no process
        holds): what `abort` does, without resuming it first. Safe to call twice."""

    @abc.abstractmethod
    async def complete(self, handle: UploadHandle) -> StoredBlob:
        """Finish an upload: the blob is stored under its sha256 (once, if already there)."""

    @abc.abstractmethod
    async def abort(self, handle: UploadHandle) -> None:
        """Drop an upload and everything written for it. Safe to call twice."""

    @abc.abstractmethod
    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        """Stream a blob's bytes. Raises `BlobNotFoundError` here, before the first chunk.
        Close the generator (`contextlib.aclosing`) if you stop reading early."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove a blob; a missing one is not an error."""

    @abc.abstractmethod
    async def url(self, key: str, *, expires: int, filename: str | None = None) -> str | None:
        """A time-limited direct download URL, or None when the app must stream the blob."""
