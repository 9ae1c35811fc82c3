"""The hub's Socket.IO transport tuned for fan-out: the few python-socketio/engineio internals
we replace, all in this module. The protocol and python-socketio's API are unchanged.

What the profile of a 1,000-client room showed, and what is done about it here:

- `AsyncManager.emit` makes one asyncio task per recipient (`_send_eio_packet` ->
  `eio.send_packet` -> `socket.send` -> `queue.put`) and then `asyncio.wait`s for all of them.
  Engine.IO's per-socket queue is unbounded, so `put` never waits: `FanoutMixin.emit` puts the
  one shared, once-encoded packet on each websocket recipient's queue directly (the same
  checks as `socket.send`: a closed socket is skipped; one whose ping timed out, and a
  long-polling client, go the upstream way).
- Each websocket negotiated permessage-deflate (the browser and Node clients offer it), so
  aiohttp compressed every frame once per recipient and kept a zlib compressor and
  decompressor per connection (~100+ KB each, most of the memory of an idle socket).
  `PlainWebSocket` answers without compression, as the Node Socket.IO server does by default
  (`perMessageDeflate: false`).
- Each socket's writer task waited for its queue through `asyncio.wait_for`, which makes a
  task (and a timer) per wait: per recipient, per message, and one held by every idle socket.
  `FastSocket.poll` takes what is already queued without waiting; a websocket's writer waits
  without a timer (its reader ends it on a ping timeout), a long-poll under `asyncio.timeout`.
- Even without a task per recipient, each delivery woke the recipient's writer task to call
  `send_str` (a UTF-8 encode and a frame built per recipient). When a socket's queue is empty
  and its writer is not in the middle of a send, the emit writes the frame, built once for
  the room, straight to the transport (`PlainWebSocket.write_now`); otherwise the packet is
  queued as before, so the order of packets on a socket is kept.
- JSON: `orjson_module` encodes packets with orjson (python-socketio's `json=` knob).
"""

from __future__ import annotations

import asyncio
import struct
import time
from types import SimpleNamespace
from typing import Any

import orjson
import socketio
from aiohttp.web import WebSocketResponse
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket
from socketio import packet as sio_packet


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def _loads(data: str | bytes, **_: Any) -> Any:
    return orjson.loads(data)


# What python-socketio's `json=` expects: a module-like object with dumps and loads.
orjson_module = SimpleNamespace(dumps=_dumps, loads=_loads, JSONDecodeError=orjson.JSONDecodeError)


class FanoutMixin(socketio.AsyncManager):  # type: ignore[misc]
    """Local room emits without a task per recipient (see the module's docstring).

    Put it after a pub/sub manager in the bases (`class M(AsyncRedisManager, FanoutMixin)`):
    the pub/sub manager publishes, and its `super().emit(..., ignore_queue=True)` for the
    local sockets then lands here."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        namespace = namespace or "/"
        if callback is not None or namespace not in self.rooms:
            await super().emit(
                event,
                data,
                namespace,
                room=room,
                skip_sid=skip_sid,
                callback=callback,
                **kwargs,
            )
            return
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        parts = encoded if isinstance(encoded, list) else [encoded]
        packets = [eio_packet.Packet(eio_packet.MESSAGE, p) for p in parts]
        for pkt in packets:
            pkt.encode()  # once, cached on the packet, shared by every recipient
        frames = [websocket_frame(pkt.encode()) for pkt in packets]
        eio = self.server.eio
        sockets = eio.sockets
        now = time.time()
        ping_timeout = eio.ping_timeout
        slow: list[asyncio.Task[None]] = []
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            sock = sockets.get(eio_sid)
            if sock is None or sock.closed:
                continue
            last_ping = sock.last_ping
            if not sock.upgraded or (last_ping and now - last_ping > ping_timeout):
                # upstream path: long-polling clients (rare: a fallback), and sockets whose
                # ping timed out (socket.send notices it and closes them)
                for pkt in packets:
                    slow.append(asyncio.create_task(self.server._send_eio_packet(eio_sid, pkt)))
                continue
            queue = sock.queue
            ws = sock.__dict__.get("plain_ws")
            if ws is not None and not sock.upgrading and queue.empty() and ws.write_now(frames):
                continue
            for pkt in packets:
                queue.put_nowait(pkt)
        if slow:
            await asyncio.wait(slow)


class LocalManager(FanoutMixin):
    """One process: rooms in memory."""


def websocket_frame(data: str | bytes) -> bytes:
    """One unmasked, uncompressed server frame (RFC 6455 5.2): text for str, binary for bytes."""
    if isinstance(data, str):
        payload, first = data.encode(), 0x81
    else:
        payload, first = data, 0x82
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


class PlainWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp websocket, without permessage-deflate, that a room emit may write
    to directly when nothing is queued or being sent ahead (`write_now`)."""

    sending = False

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        owner = getattr(self.handler, "__self__", None)  # the Engine.IO socket
        if owner is not None:
            owner.plain_ws = self
        try:
            await self.handler(self)
        finally:
            if owner is not None:
                owner.__dict__.pop("plain_ws", None)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        self.sending = True  # the writer task holds packets not yet written: keep the order
        try:
            await super().send(message)
        finally:
            self.sending = False

    def write_now(self, frames: list[bytes]) -> bool:
        """Write whole frames to the transport now, if that keeps the order and the flow
        control: the writer task is not sending, the socket is open and not paused. The
        caller checks that Engine.IO's queue is empty. False: queue them instead."""
        if self.sending:
            return False
        sock = self._sock
        if sock is None or sock.closed:
            return False
        writer = sock._writer
        if writer is None or writer._closing:
            return False
        transport = writer.transport
        if transport is None or transport.is_closing() or writer.protocol._paused:
            return False
        for frame in frames:
            transport.write(frame)
            writer._output_size += len(frame)
        return True


class FastSocket(AsyncSocket):  # type: ignore[misc]
    """Engine.IO's socket with a writer wait that creates no task (see the module's doc)."""

    async def poll(self) -> list[eio_packet.Packet]:
        queue = self.queue
        if queue.empty() and self.upgraded:
            # the websocket writer: no timer; the reader notices a dead peer (ping timeout)
            # and puts the None that ends this wait
            first = await queue.get()
        elif queue.empty():
            try:
                async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                    first = await queue.get()
            except (TimeoutError, asyncio.CancelledError):
                raise eio_exceptions.QueueEmpty() from None
        else:
            first = queue.get_nowait()
        queue.task_done()
        if first is None:
            return []
        packets = [first]
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                queue.put_nowait(None)  # as upstream: the close marker stays for the next poll
                break
            packets.append(pkt)
        return packets


class _SocketTable(dict[str, Any]):
    """Engine.IO's `sockets` table: a socket stored in it becomes a `FastSocket` (Engine.IO
    makes them itself, as `AsyncSocket`; the subclass adds no state)."""

    def __setitem__(self, sid: str, sock: Any) -> None:
        if type(sock) is AsyncSocket:
            sock.__class__ = FastSocket
        super().__setitem__(sid, sock)


def tune(server: socketio.AsyncServer) -> None:
    """Give this server's Engine.IO the uncompressed websocket (a copy of the driver table:
    the module-level one is shared by every server in the process) and `FastSocket`s."""
    eio = server.eio
    eio._async = {**eio._async, "websocket": PlainWebSocket}
    eio.sockets = _SocketTable(eio.sockets)
