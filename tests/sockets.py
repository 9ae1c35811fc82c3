"""A test client for the hub: python-socketio's AsyncClient with per-event inboxes and acks."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import socketio

SERVER_EVENTS = (
    "chat:message",
    "chat:typing",
    "chat:read",
    "chat:conversation",
    "chat:assigned",
    "presence",
    "notification",
    "dashboard:event",
    "render:progress",
    "render:completed",
    "render:failed",
    "file:scanned",
)


class HubClient:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        for event in SERVER_EVENTS:
            self.sio.on(event, self._collector(event))

    def _collector(self, event: str) -> Any:
        async def collect(data: Any) -> None:
            await self.inbox[event].put(data)

        return collect

    async def connect(self, url: str, token: str, *, transport: str = "websocket") -> HubClient:
        await self.sio.connect(url, auth={"token": token}, transports=[transport], wait_timeout=5)
        return self

    async def call(self, event: str, payload: Any = None, *, timeout: float = 5) -> Any:
        return await self.sio.call(event, payload, timeout=timeout)

    async def next(self, event: str, *, timeout: float = 5) -> Any:
        return await asyncio.wait_for(self.inbox[event].get(), timeout)

    async def until(self, event: str, predicate: Any, *, timeout: float = 5) -> Any:
        """The first `event` whose data satisfies `predicate` (earlier ones are dropped)."""

        async def wait() -> Any:
            while True:
                data = await self.inbox[event].get()
                if predicate(data):
                    return data

        return await asyncio.wait_for(wait(), timeout)

    def pending(self, event: str) -> list[Any]:
        queue = self.inbox[event]
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def close(self) -> None:
        if not self.sio.connected:
            return
        if self.sio.transport() == "polling":
            # A polling client's disconnect waits for its pending long-poll (up to the ping
            # interval); closing the Engine.IO session at once is what a closing tab does.
            read_loop = self.sio.eio.read_loop_task
            await self.sio.eio.disconnect(abort=True)
            if read_loop is not None:
                read_loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read_loop
            return
        await self.sio.disconnect()
