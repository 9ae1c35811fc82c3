"""Presence: who is online, across every hub node, without flapping.

Each connection holds a lease (refreshed by its node's heartbeat) in a per-user sorted set
scored by expiry. A user is online while any lease is live. Going offline waits a grace period,
so a reload or a brief drop does not flap, and a dead node's leases simply run out (the TTL).
Transitions are decided atomically in the store (a Lua script in Redis), so exactly one node
announces each change, as a `presence.changed` bus event and a `presence` socket event.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from redis.asyncio import Redis


class Status(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    BUSY = "busy"
    OFFLINE = "offline"


class Activity(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class PresenceState:
    user_id: str
    online: bool
    status: Status  # what the user chose (staff), OFFLINE when no connection is live
    activity: Activity

    def wire(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "online": self.online,
            "status": self.status.value if self.online else Status.OFFLINE.value,
            "activity": self.activity.value,
        }


class PresenceStore(abc.ABC):
    """Leases and per-user state. `now` is seconds on the store's clock."""

    @abc.abstractmethod
    async def lease(self, user_id: str, conn_id: str, ttl: float) -> bool:
        """Add or refresh a connection's lease; True when this made the user come online."""

    @abc.abstractmethod
    async def release(self, user_id: str, conn_id: str, grace: float) -> int:
        """Drop a lease; returns the live leases left. With none left, the user may be
        declared offline `grace` seconds from now unless a lease comes back first."""

    @abc.abstractmethod
    async def go_offline_if_due(self, user_id: str) -> bool:
        """Mark offline when no lease is live and the user's time is up; True if this did."""

    @abc.abstractmethod
    async def due_users(self) -> list[str]:
        """Users still marked online whose time is up (their node may have died)."""

    @abc.abstractmethod
    async def set_choice(
        self, user_id: str, *, status: Status | None, activity: Activity | None
    ) -> None: ...

    @abc.abstractmethod
    async def get(self, user_id: str) -> PresenceState: ...

    @abc.abstractmethod
    async def online_users(self, limit: int) -> list[str]:
        """Up to `limit` users online now (within their grace period included)."""


class MemoryPresenceStore(PresenceStore):
    """Embedded mode: one process, same rules."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, dict[str, float]] = {}
        # user -> no lease of theirs ends before this (pruning before it finds nothing)
        self._soonest: dict[str, float] = {}
        self._online: dict[str, float] = {}  # user -> when their last lease ends
        self._choice: dict[str, tuple[Status, Activity]] = {}

    def _live(self, user_id: str) -> dict[str, float]:
        """The user's live leases. Expired ones are dropped only once the soonest expiry has
        passed, so a user with many tabs (leases) costs O(1) per lease, not O(tabs)."""
        leases = self._leases.setdefault(user_id, {})
        now = self._clock()
        if leases and self._soonest.get(user_id, 0.0) <= now:
            for conn_id in [c for c, exp in leases.items() if exp <= now]:
                del leases[conn_id]
            self._soonest[user_id] = min(leases.values(), default=0.0)
        return leases

    async def lease(self, user_id: str, conn_id: str, ttl: float) -> bool:
        expires = self._clock() + ttl
        leases = self._live(user_id)
        leases[conn_id] = expires
        if len(leases) == 1 or expires < self._soonest.get(user_id, 0.0):
            self._soonest[user_id] = expires
        came_online = user_id not in self._online
        self._online[user_id] = max(self._online.get(user_id, 0.0), expires)
        return came_online

    async def release(self, user_id: str, conn_id: str, grace: float) -> int:
        leases = self._live(user_id)
        leases.pop(conn_id, None)
        if not leases and user_id in self._online:
            self._online[user_id] = self._clock() + grace
        return len(leases)

    async def go_offline_if_due(self, user_id: str) -> bool:
        if user_id not in self._online or self._live(user_id):
            return False
        if self._online[user_id] > self._clock():
            return False
        del self._online[user_id]
        return True

    async def due_users(self) -> list[str]:
        now = self._clock()
        return [u for u, until in self._online.items() if until <= now and not self._live(u)]

    async def set_choice(
        self, user_id: str, *, status: Status | None, activity: Activity | None
    ) -> None:
        current_status, current_activity = self._choice.get(
            user_id, (Status.ONLINE, Activity.ACTIVE)
        )
        self._choice[user_id] = (status or current_status, activity or current_activity)

    async def online_users(self, limit: int) -> list[str]:
        return list(self._online)[:limit]

    async def get(self, user_id: str) -> PresenceState:
        status, activity = self._choice.get(user_id, (Status.ONLINE, Activity.ACTIVE))
        return PresenceState(
            user_id=user_id, online=user_id in self._online, status=status, activity=activity
        )


# Keys: <p>presence:leases:<user> (zset conn -> expiry), <p>presence:online (zset user -> end
# of their last lease), <p>presence:choice:<user> (hash status/activity). Times come from the
# Redis server's clock, so nodes with skewed clocks agree.
_LEASE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local expires = now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) + 60000)
local was = redis.call('ZSCORE', KEYS[2], ARGV[3])
local best = expires
if was and tonumber(was) > best then best = tonumber(was) end
redis.call('ZADD', KEYS[2], best, ARGV[3])
if was then return 0 else return 1 end
"""
_RELEASE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local left = redis.call('ZCARD', KEYS[1])
if left == 0 and redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
end
return left
"""
_OFFLINE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local until_ = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not until_ then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
if tonumber(until_) > now then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
_DUE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
"""


class RedisPresenceStore(PresenceStore):
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}presence:"
        self._lease = redis.register_script(_LEASE)
        self._release = redis.register_script(_RELEASE)
        self._offline = redis.register_script(_OFFLINE)
        self._due = redis.register_script(_DUE)

    def _leases(self, user_id: str) -> str:
        return f"{self._prefix}leases:{user_id}"

    @property
    def _online(self) -> str:
        return f"{self._prefix}online"

    def _choice(self, user_id: str) -> str:
        return f"{self._prefix}choice:{user_id}"

    async def lease(self, user_id: str, conn_id: str, ttl: float) -> bool:
        result = await self._lease(
            keys=[self._leases(user_id), self._online], args=[conn_id, ttl, user_id]
        )
        return int(result) == 1

    async def release(self, user_id: str, conn_id: str, grace: float) -> int:
        left = await self._release(
            keys=[self._leases(user_id), self._online], args=[conn_id, user_id, grace]
        )
        return int(left)

    async def go_offline_if_due(self, user_id: str) -> bool:
        done = await self._offline(keys=[self._leases(user_id), self._online], args=[user_id])
        return int(done) == 1

    async def due_users(self) -> list[str]:
        users = cast(list[bytes], await self._due(keys=[self._online], args=[]))
        return [u.decode() for u in users]

    async def set_choice(
        self, user_id: str, *, status: Status | None, activity: Activity | None
    ) -> None:
        mapping = {}
        if status is not None:
            mapping["status"] = status.value
        if activity is not None:
            mapping["activity"] = activity.value
        if mapping:
            await self._redis.hset(self._choice(user_id), mapping=cast(Any, mapping))

    async def online_users(self, limit: int) -> list[str]:
        users = cast(list[bytes], await self._redis.zrange(self._online, 0, limit - 1))
        return [u.decode() for u in users]

    async def get(self, user_id: str) -> PresenceState:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zscore(self._online, user_id)
        pipe.hgetall(self._choice(user_id))
        online, choice = await pipe.execute()
        status = choice.get(b"status", b"online").decode()
        activity = choice.get(b"activity", b"active").decode()
        return PresenceState(
            user_id=user_id,
            online=online is not None,
            status=Status(status),
            activity=Activity(activity),
        )


def create_presence_store(*, redis: Redis | None, prefix: str) -> PresenceStore:
    return MemoryPresenceStore() if redis is None else RedisPresenceStore(redis, prefix=prefix)
