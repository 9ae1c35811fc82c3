"""The bus over Redis pub/sub (redis.asyncio): every hub node and worker sees every event.

Channel per event type: `<prefix>bus:<type>`; a subscription is a PSUBSCRIBE on
`<prefix>bus:<pattern>`. One pub/sub connection per bus reads, and each message is handed to the
subscriptions of exactly the pattern Redis matched, so overlapping patterns do not double-deliver.
If Redis goes away, the reader backs off and reconnects; redis-py re-subscribes on reconnect.
Events published while the link is down are lost (pub/sub is news; the database is the truth).
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.bus.base import DEFAULT_QUEUE_SIZE, Event, EventBus
from core.logs import get_logger

log = get_logger(__name__)

_MAX_BACKOFF = 5.0


class RedisBus(EventBus):
    def __init__(
        self, redis: Redis, *, prefix: str = "", queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._redis = redis
        self._channel_prefix = f"{prefix}bus:"
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._patterns: set[str] = set()
        self._unsubscribed_patterns = False  # some PSUBSCRIBE has not reached Redis yet

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)

    def channel(self, event_type: str) -> str:
        return self._channel_prefix + event_type

    async def _publish(self, event: Event) -> None:
        await self._redis.publish(self.channel(event.type), event.to_json())

    async def _subscribed(self, pattern: str) -> None:
        """Listen for `pattern`; if Redis is away now, the reader subscribes once it is back
        (a node starts without Redis and reports itself not ready, instead of crashing)."""
        pubsub = self._require_pubsub()
        self._patterns.add(pattern)
        try:
            await pubsub.psubscribe(self.channel(pattern))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("bus.subscribe_deferred", pattern=pattern, error=str(exc))
            self._unsubscribed_patterns = True
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(pubsub), name="bus:redis-reader")

    async def _unsubscribed(self, pattern: str) -> None:
        self._patterns.discard(pattern)
        if self._pubsub is not None:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await self._pubsub.punsubscribe(self.channel(pattern))

    async def _closed(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    def _require_pubsub(self) -> PubSub:
        if self._pubsub is None:
            raise RuntimeError("RedisBus.start() was not awaited")
        return self._pubsub

    async def _read(self, pubsub: PubSub) -> None:
        backoff = 0.05
        while True:
            try:
                if self._unsubscribed_patterns:
                    # PSUBSCRIBE is idempotent: (re)send them all.
                    await pubsub.psubscribe(*(self.channel(p) for p in sorted(self._patterns)))
                    self._unsubscribed_patterns = False
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("bus.redis_disconnected", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.05
            if message is None or message.get("type") != "pmessage":
                continue
            self._dispatch(message["pattern"], message["data"])

    def _dispatch(self, channel_pattern: bytes | str, raw: bytes | str) -> None:
        if isinstance(channel_pattern, bytes):
            channel_pattern = channel_pattern.decode()
        pattern = channel_pattern.removeprefix(self._channel_prefix)
        try:
            event = Event.from_json(raw)
        except ValueError:
            log.warning("bus.bad_message", pattern=pattern)
            return
        for subscription in self._subscriptions:
            if subscription.pattern == pattern:
                subscription.offer(event)
