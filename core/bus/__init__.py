"""The event bus: `publish`/`emit` an `Event`, `subscribe` a handler by type pattern."""

from __future__ import annotations

from redis.asyncio import Redis

from core.bus.base import Event, EventBus, Handler, Subscription, check_event_type
from core.bus.memory import MemoryBus
from core.bus.redis import RedisBus


def create_bus(*, redis: Redis | None, prefix: str) -> EventBus:
    """Redis pub/sub when a Redis client is given (production), in-process otherwise."""
    if redis is None:
        return MemoryBus()
    return RedisBus(redis, prefix=prefix)


__all__ = [
    "Event",
    "EventBus",
    "Handler",
    "MemoryBus",
    "RedisBus",
    "Subscription",
    "check_event_type",
    "create_bus",
]
