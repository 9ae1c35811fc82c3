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
  task (and a timer) per wait. `FastSocket.poll` takes what is already queued without
  waiting, a long-poll waits under `asyncio.timeout`.
- Even without a task per recipient, each delivery woke the recipient's writer task to call
  `send_str` (a UTF-8 encode and a frame built per recipient). When a socket's queue is empty
  and nothing is being sent ahead, the emit writes the frame, built once for the room,
  straight to the transport (`PlainWebSocket.write_now`); otherwise the packet is queued, so
  the order of packets on a socket is kept.

What an idle websocket cost (tracemalloc at 2,000 sockets: 35 KB each, Node 15 KB), and why:

- Three tasks per socket: Engine.IO's writer, its ping task (a sleep per ping interval), and
  the reader's `wait_for` (a task and a timer per read). Now none: the request's own task
  reads (`FastSocket.serve`, no timer), writes go straight to the transport (a `_flush` task
  exists only while packets wait for a busy or paused connection), and one `PingWheel` per
  server sends every socket's pings and closes those whose pong does not come.
- An `asyncio.Queue` per socket (four deques and an Event, ~3 KB): `SlimQueue`.
- The request held open through the app's middlewares, their context managers and the
  security headers on the 101: `SocketIOFirst` (installed by `ideinstein serve`) routes
  `/socket.io/` around them, and serves an open websocket from its own frame rather than
  from under Engine.IO's five nested request-handling coroutines.
- The WSGI environ (every request header, twice over) and aiohttp's request headers and HTTP
  parser, kept for the socket's life: `slim_environ` and `slim_request` keep what is used.
- JSON: `orjson_module` encodes packets with orjson (python-socketio's `json=` knob).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import orjson
import socketio
from aiohttp import web
from aiohttp.web import WebSocketResponse
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket
from multidict import CIMultiDict, CIMultiDictProxy
from socketio import packet as sio_packet

from core.logs import get_logger

log = get_logger(__name__)


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
            sock.deliver(packets, frames)
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


# What stays of a websocket's WSGI environ once it is open (python-socketio keeps the dict
# for the connection's life: `get_environ`); the other request headers go.
KEPT_ENVIRON = frozenset(
    {
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "HTTP_ORIGIN",
        "HTTP_USER_AGENT",
        "HTTP_X_FORWARDED_FOR",
        "aiohttp.request",
    }
)


def slim_environ(environ: dict[str, Any]) -> None:
    """Keep only KEPT_ENVIRON, in place (the dict is shared with Socket.IO). `clear()` frees
    the dict's table, so the few keys put back get a small one."""
    kept = {key: environ[key] for key in KEPT_ENVIRON if key in environ}
    environ.clear()
    environ.update(kept)


# The request headers an open websocket keeps (the access log's, and the client's origin and
# address); aiohttp holds the request, its parsed headers and raw header bytes for the
# connection's life.
KEPT_HEADERS = frozenset(
    {"host", "origin", "user-agent", "referer", "x-forwarded-for", "x-request-id"}
)


def slim_request(request: web.BaseRequest) -> None:
    """Once the websocket is open, drop what only the HTTP handshake needed: all but
    KEPT_HEADERS of the request's headers (parsed and raw) and the connection's HTTP parser
    (aiohttp reads frames with the websocket's own parser from then on)."""
    headers = CIMultiDictProxy(
        CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() in KEPT_HEADERS)
    )
    request._message = request._message._replace(headers=headers, raw_headers=())
    request._headers = headers
    protocol = request.protocol
    if protocol is not None and protocol._payload_parser is not None:
        protocol._parser = None


def slim_writer(ws: WebSocketResponse) -> None:
    """The open websocket's response keeps no headers. An uncompressed server-side writer
    never masks frames (its per-connection random source goes) and never starts a
    background send (its per-connection task set goes: a shared empty frozenset would fail
    loudly if it ever did)."""
    ws.headers.clear()  # the 101's headers: sent, and read by nothing after (its status is)
    writer: Any = ws._writer  # aiohttp's types: a partial and a set; shared stand-ins here
    if writer is not None and not writer.use_mask and not writer.compress:
        writer.get_random_bits = _never_masks
        writer._background_tasks = _NO_TASKS


_NO_TASKS: frozenset[asyncio.Task[None]] = frozenset()


def _never_masks() -> int:
    raise AssertionError("a server websocket does not mask its frames")


class PlainWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp websocket, without permessage-deflate, that a room emit may write
    to directly when nothing is queued or being sent ahead (`write_now`)."""

    sending = False
    served_later = False  # SocketIOFirst reads it (`FastSocket.serve`), not our caller
    _flusher: asyncio.Task[None] | None = None

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        slim_environ(environ)
        slim_request(request)
        slim_writer(self._sock)
        self.environ = environ
        owner = getattr(self.handler, "__self__", None)  # the Engine.IO socket
        if owner is not None:
            owner.plain_ws = self
        try:
            await self.handler(self)
        finally:
            if owner is not None and not self.served_later:
                owner.__dict__.pop("plain_ws", None)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        self.sending = True  # the writer task holds packets not yet written: keep the order
        try:
            await super().send(message)
        finally:
            self.sending = False

    def flush_soon(self, sock: FastSocket) -> None:
        """Start the task that writes what `sock` has queued, unless it runs already."""
        if self._flusher is None and not sock.queue.empty():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(sock))

    async def _flush(self, sock: FastSocket) -> None:
        try:
            await sock.flush(self)
        finally:
            self._flusher = None

    async def stop_flushing(self) -> None:
        """The connection is over: stop writing, and count what was queued as done."""
        task = self._flusher
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        owner = getattr(self.handler, "__self__", None)
        if owner is not None:
            owner.drop_queued()

    def end(self) -> None:
        """Close the connection under the reader (a peer that stopped answering pings)."""
        sock = self._sock
        writer = sock._writer if sock is not None else None
        transport = writer.transport if writer is not None else None
        if transport is not None and not transport.is_closing():
            transport.close()

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


class SlimQueue:
    """The part of `asyncio.Queue` Engine.IO uses (put, get, task_done, join, empty), for one
    socket: a few slots instead of an `asyncio.Queue`'s four deques and its `Event` (about
    3 KB per idle connection). The item deque exists only while something is queued."""

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._joiners: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._unfinished += 1
        getters = self._getters
        if getters:
            self._getters = None
            for waiter in getters:
                if not waiter.done():
                    waiter.set_result(None)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        return item

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                if self._getters is not None and waiter in self._getters:
                    self._getters.remove(waiter)
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners:
            joiners, self._joiners = self._joiners, None
            for waiter in joiners:
                if not waiter.done():
                    waiter.set_result(None)

    async def join(self) -> None:
        if self._unfinished:
            waiter = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(waiter)
            await waiter


class PingWheel:
    """Engine.IO's pings for every socket of one server from one task (upstream: a task
    sleeping `ping_interval` per socket, and a `wait_for` timer per websocket read).

    A socket due for a ping is put in the bucket of its tick; each tick sends the pings that
    are due and, `ping_timeout` later, closes the sockets whose pong has not come (the
    client's side of the same contract is unchanged)."""

    TICK = 0.25  # seconds

    def __init__(self, server: Any) -> None:
        self.server = server
        self._buckets: dict[int, list[tuple[FastSocket, float]]] = {}
        self._task: asyncio.Task[None] | None = None

    def _add(self, sock: FastSocket, delay: float, stamp: float) -> None:
        key = math.ceil((time.monotonic() + delay) / self.TICK)
        self._buckets.setdefault(key, []).append((sock, stamp))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def ping_later(self, sock: FastSocket) -> None:
        self._add(sock, self.server.ping_interval, 0.0)

    def check_later(self, sock: FastSocket, stamp: float) -> None:
        self._add(sock, self.server.ping_timeout + self.TICK, stamp)

    async def _run(self) -> None:
        done = math.floor(time.monotonic() / self.TICK)
        while True:
            await asyncio.sleep(self.TICK)
            now = math.floor(time.monotonic() / self.TICK)
            for key in range(done + 1, now + 1):
                for sock, stamp in self._buckets.pop(key, ()):
                    try:
                        if stamp:
                            await sock.check_pong(stamp)
                        else:
                            await sock.ping_now()
                    except Exception:  # one socket's failure (its disconnect handler, say)
                        # must not stop every other socket's pings, as Engine.IO's own
                        # service task would not
                        log.exception("fastio.ping_failed", sid=sock.sid)
            done = now

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._buckets.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class FastSocket(AsyncSocket):  # type: ignore[misc]
    """Engine.IO's socket without a task of its own while idle (see the module's doc):
    pings come from the server's `PingWheel`, a websocket is read by the request's own task
    with no timer, and packets are written straight to it; a task (`_flush`) exists only
    while packets wait for a slow or paused connection."""

    last_ping: float | None
    connected: bool
    upgraded: bool
    upgrading: bool
    closing: bool
    closed: bool

    async def poll(self) -> list[eio_packet.Packet]:
        queue = self.queue
        if queue.empty() and self.upgraded:
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

    # -- pings -------------------------------------------------------------------------------

    def schedule_ping(self) -> None:
        if self.last_ping:  # as upstream: only once the previous ping was answered
            self.last_ping = None
            self.server.ping_wheel.ping_later(self)

    async def ping_now(self) -> None:
        if self.closing or self.closed:
            return
        stamp = self.last_ping = time.time()
        await self.send(eio_packet.Packet(eio_packet.PING))
        self.server.ping_wheel.check_later(self, stamp)

    async def check_pong(self, stamp: float) -> None:
        """`ping_timeout` after a ping: no pong since (the same ping pending) -> gone."""
        if self.last_ping != stamp:
            return
        if not self.closing and not self.closed:
            await self.check_ping_timeout()  # closes it (`disconnect`)
        ws = self.__dict__.get("plain_ws")
        if ws is not None:
            ws.end()  # the reader stops waiting for a peer that is gone

    # -- sending -----------------------------------------------------------------------------

    async def send(self, pkt: eio_packet.Packet) -> None:
        if not await self.check_ping_timeout():
            return
        if "plain_ws" in self.__dict__:
            self.deliver([pkt], [websocket_frame(pkt.encode())])
        else:
            self.queue.put_nowait(pkt)  # long-polling: the next poll takes it

    def deliver(self, packets: list[eio_packet.Packet], frames: list[bytes]) -> None:
        """Packets to this socket, in order: written now to an idle websocket, else queued
        (for the websocket's flush task, or for the long-poll that takes them)."""
        ws = self.__dict__.get("plain_ws")
        queue = self.queue
        if ws is not None and not self.upgrading and queue.empty() and ws.write_now(frames):
            return
        for pkt in packets:
            queue.put_nowait(pkt)
        if ws is not None and not self.upgrading:
            ws.flush_soon(self)

    async def flush(self, ws: PlainWebSocket) -> None:
        """Write what is queued (the websocket was busy or paused), then end."""
        queue = self.queue
        while not queue.empty():
            pkt = queue.get_nowait()
            try:
                if pkt is None:
                    return
                await ws.send(pkt.encode())
            except (OSError, RuntimeError):  # the connection is gone: the reader ends it
                return
            finally:
                queue.task_done()

    def drop_queued(self) -> None:
        """Forget what was queued for a connection that is over (a `close(wait=True)`
        waiting for the queue then returns)."""
        queue = self.queue
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()

    # -- the websocket -----------------------------------------------------------------------

    async def _websocket_handler(self, ws: PlainWebSocket) -> None:
        if self.connected:
            if not await self._finish_upgrade(ws):
                return
        else:
            self.connected = True
            self.upgraded = True
        ws.flush_soon(self)  # anything queued before the websocket was ready
        later = _SERVE_LATER.get()
        if later is not None:
            # SocketIOFirst serves it from its own frame: the frames of Engine.IO's request
            # handling (five or six coroutines) are not kept for the connection's life
            ws.served_later = True
            later.append((self, ws))
            return
        await self.serve(ws)

    async def serve(self, ws: PlainWebSocket) -> None:
        """Read the open websocket until it closes, then close the socket."""
        max_size = self.server.max_http_buffer_size
        try:
            while True:
                data = (await ws._sock.receive()).data
                if type(data) is not str and type(data) is not bytes:
                    break  # closed, or an error
                if len(data) > max_size:
                    break
                try:
                    await self.receive(eio_packet.Packet(encoded_packet=data))
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    break
        finally:
            await ws.stop_flushing()
            await ws.close()
            self.__dict__.pop("plain_ws", None)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        sockets = self.server.sockets
        if sockets.get(self.sid) is self:
            del sockets[self.sid]  # as Engine.IO does when its websocket handler returns

    async def _finish_upgrade(self, ws: PlainWebSocket) -> bool:
        """A polling client moving to the websocket (as upstream: probe, then UPGRADE)."""
        self.upgrading = True  # packets are queued meanwhile
        try:
            try:
                data = await ws.wait()
            except OSError:
                return False
            probe = eio_packet.Packet(encoded_packet=data)
            if probe.packet_type != eio_packet.PING or probe.data != "probe":
                return False
            await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            self.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            try:
                data = await ws.wait()
            except OSError:
                return False
            if eio_packet.Packet(encoded_packet=data).packet_type != eio_packet.UPGRADE:
                self.upgraded = False
                return False
            self.upgraded = True
            return True
        finally:
            self.upgrading = False


# Set by SocketIOFirst around Engine.IO's request handling: an open websocket is put here
# for it to serve (FastSocket.serve) once that handling has returned.
_SERVE_LATER: contextvars.ContextVar[list[tuple[FastSocket, PlainWebSocket]] | None] = (
    contextvars.ContextVar("fastio_serve_later", default=None)
)


# What the application's `add_response_headers` would add that matters for Engine.IO's
# polling answers (text or JSON, never a page): no sniffing them into something else, no
# caching, no framing.
POLLING_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


class SocketIOFirst:
    """A `web.Server` request handler: Socket.IO's path goes straight to Engine.IO, the rest
    to the application (`fallback`, the app's own handler with its middlewares).

    A websocket is a request held open for the connection's life: through the application
    it keeps a coroutine frame per middleware (request id, metrics, CORS, errors, database,
    auth), their context managers and the security headers on its 101 response. Socket.IO
    needs none of them (it authenticates at its handshake and does its own CORS); `enter`
    runs first (it makes the app's database current for the connection's task)."""

    __slots__ = ("_enter", "_fallback", "_handle", "_prefix")

    def __init__(
        self,
        server: socketio.AsyncServer,
        fallback: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        enter: Callable[[], None] | None = None,
        path: str = "/socket.io/",
    ) -> None:
        self._handle = server.eio.handle_request
        self._fallback = fallback
        self._enter = enter
        self._prefix = path

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if not request.path.startswith(self._prefix):
            return await self._fallback(request)
        if self._enter is not None:
            self._enter()
        later: list[tuple[FastSocket, PlainWebSocket]] = []
        token = _SERVE_LATER.set(later)
        try:
            response: web.StreamResponse = await self._handle(request)
        finally:
            _SERVE_LATER.reset(token)
            del token  # not kept in this frame for the connection's life
        if later:
            sock, ws = later.pop()
            del later
            await sock.serve(ws)
        elif not response.prepared:  # a polling answer: the headers every response gets
            response.headers.update(POLLING_HEADERS)
        return response


class _SocketTable(dict[str, Any]):
    """Engine.IO's `sockets` table: a socket stored in it becomes a `FastSocket` (Engine.IO
    makes them itself, as `AsyncSocket`; the subclass adds no state)."""

    def __setitem__(self, sid: str, sock: Any) -> None:
        if type(sock) is AsyncSocket:
            sock.__class__ = FastSocket
        super().__setitem__(sid, sock)


def tune(server: socketio.AsyncServer) -> None:
    """Give this server's Engine.IO the uncompressed websocket (a copy of the driver table:
    the module-level one is shared by every server in the process), `FastSocket`s with
    `SlimQueue`s, and one `PingWheel`."""
    eio = server.eio
    eio._async = {**eio._async, "websocket": PlainWebSocket}
    eio.sockets = _SocketTable(eio.sockets)
    eio.create_queue = SlimQueue
    eio.ping_wheel = PingWheel(eio)


async def stop_pings(server: socketio.AsyncServer) -> None:
    """Stop the ping wheel's task (after `AsyncServer.shutdown()`)."""
    wheel: PingWheel | None = getattr(server.eio, "ping_wheel", None)
    if wheel is not None:
        await wheel.stop()
