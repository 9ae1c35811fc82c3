"""Virus scanning: an asyncio client for clamd's INSTREAM command, and the no-op scanner of the
embedded mode.

INSTREAM (clamd(8)): send `zINSTREAM\\0`, then chunks as a 4-byte big-endian length followed by
that many bytes, then a zero length; clamd answers one `\\0`-terminated line:

    stream: OK
    stream: <signature> FOUND
    INSTREAM size limit exceeded. ERROR      (more than StreamMaxLength bytes were sent)
    <reason> ERROR

The file is streamed from an async iterator: the client holds one chunk at a time, never the
whole file. Each chunk sent is at most `chunk_size` bytes (keep it at or below clamd's
StreamMaxLength); larger chunks from the source are sent in slices.

`ScannerUnavailable` (clamd cannot be reached, stops answering, or hangs up without a reply)
is worth retrying later; `ScanFailed` (clamd answered ERROR) is not: the same file fails again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import AppError, ServiceUnavailable
from core.settings import Settings

DEFAULT_CHUNK_SIZE = 64 * 1024
_END_OF_STREAM = struct.pack(">I", 0)
_MAX_CHUNK = 2**32 - 1  # the length prefix has 4 bytes
# clamd's reply is one short line; anything longer is not clamd.
_MAX_REPLY = 64 * 1024


@dataclass(frozen=True)
class ScanResult:
    """`clean` is False only when a signature matched. `scanned` is False when nothing looked
    at the bytes (no clamd configured): such a result is clean by assumption, not by scan."""

    clean: bool
    signature: str | None
    scanned: bool = True


class ScannerUnavailable(ServiceUnavailable):
    """clamd could not be reached or did not answer in time: retry later."""

    default_code = "scanner_unavailable"
    default_message = "The virus scanner is unavailable"


class _HungUp(Exception):
    """clamd closed the connection while the stream was being sent."""


class ScanFailed(AppError):
    """clamd answered ERROR (e.g. the stream was longer than its StreamMaxLength): the same
    bytes would fail again."""

    status = 502
    default_code = "scan_failed"
    default_message = "The virus scanner could not scan the file"


@dataclass(frozen=True)
class TcpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return f"unix://{self.path}"


ClamdAddress = TcpAddress | UnixAddress


def parse_clamd_url(url: str) -> ClamdAddress:
    """`tcp://HOST:PORT` or `unix:///absolute/path`; anything else raises `ValueError`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"malformed clamd URL {url!r} ({exc})") from None
    if parts.scheme == "tcp":
        if not parts.hostname:
            raise ValueError(f"malformed clamd URL {url!r}: no host")
        if port is None:
            raise ValueError(f"malformed clamd URL {url!r}: no port")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"malformed clamd URL {url!r}: unexpected path or query")
        return TcpAddress(host=parts.hostname, port=port)
    if parts.scheme == "unix":
        if parts.netloc:
            raise ValueError(f"malformed clamd URL {url!r}: expected unix:///absolute/path")
        if not parts.path.startswith("/") or parts.path == "/":
            raise ValueError(f"malformed clamd URL {url!r}: no socket path")
        return UnixAddress(path=parts.path)
    raise ValueError(f"malformed clamd URL {url!r}: the scheme must be tcp or unix")


def parse_reply(reply: str) -> ScanResult:
    """One INSTREAM reply line (without its terminator) as a result; ERROR raises."""
    if reply.endswith(" ERROR"):
        raise ScanFailed(details={"reply": reply}, message=f"clamd: {reply.removesuffix(' ERROR')}")
    if reply == "stream: OK":
        return ScanResult(clean=True, signature=None)
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        signature = reply.removeprefix("stream: ").removesuffix(" FOUND")
        return ScanResult(clean=False, signature=signature)
    raise ScanFailed(details={"reply": reply}, message=f"Unexpected reply from clamd: {reply!r}")


class Scanner(ABC):
    """What the upload pipeline needs from a virus scanner."""

    @abstractmethod
    async def scan(self, chunks: AsyncIterable[bytes]) -> ScanResult:
        """Scan the bytes the iterator yields, in order."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the scanner answers (readiness)."""

    @abstractmethod
    async def version(self) -> str | None:
        """The engine's version line, or None when there is no engine."""


class NullScanner(Scanner):
    """The embedded mode (no `CLAMD_URL`): every file passes, marked `scanned=False`. The
    iterator is not read, so a source that is not scanned costs nothing."""

    async def scan(self, chunks: AsyncIterable[bytes]) -> ScanResult:
        return ScanResult(clean=True, signature=None, scanned=False)

    async def ping(self) -> bool:
        return True

    async def version(self) -> str | None:
        return None


class ClamdScanner(Scanner):
    """clamd over TCP or a Unix socket; one connection per command.

    `connect_timeout` bounds connecting, `io_timeout` each write of a chunk and the answer to
    PING/VERSION, `reply_timeout` the wait for the verdict after the last chunk (clamd scans
    once it has the whole stream, so this grows with the file)."""

    def __init__(
        self,
        address: ClamdAddress,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        connect_timeout: float = 5.0,
        io_timeout: float = 30.0,
        reply_timeout: float = 120.0,
    ) -> None:
        if not 1 <= chunk_size <= _MAX_CHUNK:
            raise ValueError(f"chunk_size must be between 1 and {_MAX_CHUNK}")
        self.address = address
        self.chunk_size = chunk_size
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.reply_timeout = reply_timeout

    async def ping(self) -> bool:
        try:
            return await self._command(b"zPING\0") == "PONG"
        except ScannerUnavailable:
            return False

    async def version(self) -> str | None:
        return await self._command(b"zVERSION\0")

    async def scan(self, chunks: AsyncIterable[bytes]) -> ScanResult:
        sock = await self._connect()
        # Read while sending: clamd answers (ERROR) and hangs up as soon as the stream is too
        # long. Plain sockets, not streams: a send that fails on clamd's hang-up must not
        # close the socket, so the reply already received can still be read.
        reply = asyncio.create_task(self._read_reply(sock))
        try:
            # If clamd hangs up while we send, its reply says why.
            with contextlib.suppress(_HungUp):
                await self._send_stream(sock, chunks, reply)
            try:
                text = await asyncio.wait_for(reply, self.reply_timeout)
            except TimeoutError as exc:
                raise ScannerUnavailable(
                    message=f"clamd at {self.address} gave no verdict in {self.reply_timeout} s"
                ) from exc
            return parse_reply(text)
        finally:
            reply.cancel()
            with contextlib.suppress(asyncio.CancelledError, ScannerUnavailable):
                await reply
            sock.close()

    async def _send_stream(
        self, sock: socket.socket, chunks: AsyncIterable[bytes], reply: asyncio.Task[str]
    ) -> None:
        await self._send(sock, b"zINSTREAM\0")
        async for chunk in chunks:  # errors of the source itself propagate unchanged
            view = memoryview(chunk)
            for start in range(0, len(view), self.chunk_size):
                if reply.done():  # clamd has answered early: stop sending
                    return
                piece = view[start : start + self.chunk_size]
                await self._send(sock, struct.pack(">I", len(piece)))
                await self._send(sock, piece)
        if not reply.done():
            await self._send(sock, _END_OF_STREAM)

    async def _send(self, sock: socket.socket, data: bytes | memoryview) -> None:
        sending = asyncio.get_running_loop().sock_sendall(sock, data)
        try:
            await asyncio.wait_for(sending, self.io_timeout)
        except TimeoutError as exc:  # before OSError, its base class
            raise ScannerUnavailable(
                message=f"clamd at {self.address} stopped reading the stream"
            ) from exc
        except OSError as exc:
            raise _HungUp from exc

    async def _command(self, command: bytes) -> str:
        loop = asyncio.get_running_loop()
        sock = await self._connect()
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, command), self.io_timeout)
            return await asyncio.wait_for(self._read_reply(sock), self.io_timeout)
        except (OSError, TimeoutError) as exc:
            raise ScannerUnavailable(
                message=f"clamd at {self.address} did not answer {command!r} ({exc!r})"
            ) from exc
        finally:
            sock.close()

    async def _connect(self) -> socket.socket:
        try:
            async with asyncio.timeout(self.connect_timeout):
                if isinstance(self.address, UnixAddress):
                    return await _open(socket.AF_UNIX, 0, self.address.path)
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(
                    self.address.host, self.address.port, type=socket.SOCK_STREAM
                )
                error: OSError = OSError(f"{self.address.host} has no address")
                for family, _, proto, _, sockaddr in infos:
                    try:
                        return await _open(family, proto, sockaddr)
                    except OSError as exc:
                        error = exc
                raise error
        except (OSError, TimeoutError) as exc:
            raise ScannerUnavailable(
                message=f"Cannot connect to clamd at {self.address} ({exc!r})"
            ) from exc

    async def _read_reply(self, sock: socket.socket) -> str:
        loop = asyncio.get_running_loop()
        data = b""
        while b"\0" not in data:
            try:
                received = await loop.sock_recv(sock, 4096)
            except OSError as exc:
                raise ScannerUnavailable(
                    message=f"clamd at {self.address} broke the connection ({exc!r})"
                ) from exc
            if not received:
                raise ScannerUnavailable(
                    message=f"clamd at {self.address} closed the connection without a reply"
                )
            data += received
            if len(data) > _MAX_REPLY:
                raise ScannerUnavailable(message=f"clamd at {self.address} sent no reply line")
        return data[: data.index(b"\0")].decode("utf-8", errors="replace").strip()


async def _open(family: int, proto: int, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:  # also on cancellation: never leak the socket
        sock.close()
        raise
    return sock


def make_scanner(settings: Settings) -> Scanner:
    """clamd when `CLAMD_URL` is set, else the `NullScanner` of the embedded mode."""
    if settings.clamd_url is None:
        return NullScanner()
    return ClamdScanner(parse_clamd_url(settings.clamd_url))
