"""The event bus seam: the envelope, the interface, and the per-subscription delivery loop.

News, not truth: whatever must survive a crash is in the database before its event is published.
Delivery is at-most-once and in publish order per subscription. Each subscription has its own
bounded queue and task, so a slow handler delays only itself; when its queue is full the oldest
events are dropped and counted (`Subscription.dropped`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fnmatch
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.clock import utcnow
from core.ids import new_id_str
from core.logs import get_logger

log = get_logger(__name__)

Handler = Callable[["Event"], Awaitable[None]]

DEFAULT_QUEUE_SIZE = 10_000


class Event(BaseModel):
    """`{id, type, occurred_at, actor_id, subject, data}`; `type` is `noun.verb` (past tense)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id_str)
    type: str
    occurred_at: datetime = Field(default_factory=utcnow)
    actor_id: str | None = None
    subject: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        return cls.model_validate_json(raw)


def check_event_type(event_type: str) -> None:
    """`noun.verb`: lower-case words joined by one dot, no glob characters."""
    noun, dot, verb = event_type.partition(".")
    valid = (
        dot
        and noun
        and verb
        and all(
            part.replace("_", "").isalnum() and part.islower() for part in event_type.split(".")
        )
    )
    if not valid:
        raise ValueError(f"event type {event_type!r} is not noun.verb")


class Subscription:
    """One handler for one type pattern (a glob: `chat.*`, `render.progress`, `*`)."""

    def __init__(self, pattern: str, handler: Handler, *, queue_size: int) -> None:
        self.pattern = pattern
        self.handler = handler
        self.dropped = 0
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._on_close: Callable[[Subscription], Awaitable[None]] | None = None

    def matches(self, event_type: str) -> bool:
        return fnmatch.fnmatchcase(event_type, self.pattern)

    def offer(self, event: Event) -> None:
        """Queue `event` without waiting; a full queue loses its oldest event."""
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            log.warning("bus.subscription_overflow", pattern=self.pattern, dropped=self.dropped)
        self._queue.put_nowait(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bus:{self.pattern}")

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.handler(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus.handler_failed", pattern=self.pattern, event_type=event.type)
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued event has been handled (tests, graceful shutdown)."""
        await self._queue.join()

    async def close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            await on_close(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class EventBus(abc.ABC):
    """Publish events; subscribe handlers by type pattern. Open with `start`, end with `close`."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections; the memory bus needs none."""

    async def publish(self, event: Event) -> None:
        check_event_type(event.type)
        await self._publish(event)

    async def emit(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        actor_id: str | None = None,
        subject: str | None = None,
    ) -> Event:
        """Build an envelope and publish it; returns what was sent."""
        event = Event(type=event_type, data=data or {}, actor_id=actor_id, subject=subject)
        await self.publish(event)
        return event

    async def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        subscription = Subscription(pattern, handler, queue_size=self._queue_size)
        subscription._on_close = self._unsubscribe
        self._subscriptions.append(subscription)
        subscription.start()
        await self._subscribed(pattern)
        return subscription

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._closed()

    async def _unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
        if not any(sub.pattern == subscription.pattern for sub in self._subscriptions):
            await self._unsubscribed(subscription.pattern)

    def _deliver(self, event: Event) -> None:
        for subscription in self._subscriptions:
            if subscription.matches(event.type):
                subscription.offer(event)

    @abc.abstractmethod
    async def _publish(self, event: Event) -> None: ...

    async def _subscribed(self, pattern: str) -> None:  # noqa: B027 - optional hook
        """A transport that must listen for `pattern` starts here."""

    async def _unsubscribed(self, pattern: str) -> None:  # noqa: B027 - optional hook
        """The last subscription for `pattern` has gone."""

    async def _closed(self) -> None:  # noqa: B027 - optional hook
        """Release the transport's connections."""
