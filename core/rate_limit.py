"""Sliding-window rate limits: `hit(key, Limit(count, window))` says whether a hit may pass.

A sliding log, not fixed buckets: every admitted hit is kept with its time until it is one
window old, so `count` hits are allowed in *any* interval of `window` seconds and a burst at a
bucket boundary cannot double the budget. A refused hit is not recorded, so a client hammering a
closed limit does not push its own reopening further away.

A key is meant to be used with one `Limit` (put the limit's name in the key): the log's expiry
follows the window of the latest hit. `MemoryRateLimiter` is the embedded mode's (one process);
`RedisRateLimiter` is the truth shared by every hub process.
"""

from __future__ import annotations

import abc
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

_MICROS = 1_000_000
_MIN_SWEEP = 1024


@dataclass(frozen=True, slots=True)
class Limit:
    count: int  # how many hits are allowed ...
    window: float  # ... per this many seconds (sliding window)

    def __post_init__(self) -> None:
        if self.count < 1 or not self.window > 0:
            raise ValueError(f"a limit needs count >= 1 and window > 0, got {self!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # hits left in the window after this one (0 when refused)
    retry_after: float  # seconds until one more hit would be allowed (0.0 when allowed)
    limit: Limit


class RateLimiter(abc.ABC):
    """Check-and-record in one step, so concurrent hits can never overspend a budget."""

    async def hit(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Record `cost` hits for `key` if they fit in `limit`; a refused hit is not recorded."""
        if not 1 <= cost <= limit.count:
            # Beyond the count it could never pass: a caller's bug, not a client's refusal.
            raise ValueError(f"cost must be between 1 and {limit.count}, got {cost}")
        return await self._check(key, limit, cost=cost, record=True)

    async def peek(self, key: str, limit: Limit) -> Decision:
        """What a hit of cost 1 would be told, without recording one."""
        return await self._check(key, limit, cost=1, record=False)

    @abc.abstractmethod
    async def reset(self, key: str) -> None:
        """Forget every hit of `key` (e.g. after a successful login)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the limiter owns; a shared Redis client is its owner's to close."""

    @abc.abstractmethod
    async def _check(self, key: str, limit: Limit, *, cost: int, record: bool) -> Decision: ...


class _Log:
    """One key's admitted hit times (one entry per unit of cost), oldest first."""

    __slots__ = ("times", "window")

    def __init__(self, window: float) -> None:
        self.times: deque[float] = deque()
        self.window = window


class MemoryRateLimiter(RateLimiter):
    """One process's limits. No await between check and record, so asyncio cannot interleave.

    Memory stays bounded: a key whose hits have all aged out is dropped when it is next seen, and
    whenever the number of keys doubles a sweep drops every such key that was not seen again.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        """How many keys are tracked (tests and metrics)."""
        return len(self._logs)

    async def reset(self, key: str) -> None:
        self._logs.pop(key, None)

    async def close(self) -> None:
        self._logs.clear()

    async def _check(self, key: str, limit: Limit, *, cost: int, record: bool) -> Decision:
        now = self._clock()
        log = self._logs.get(key) or _Log(limit.window)
        times = log.times
        while times and times[0] <= now - limit.window:
            times.popleft()
        used = len(times)
        if used + cost > limit.count:
            # The hit fits once the oldest `used + cost - count` entries have aged out.
            retry_after = times[used + cost - limit.count - 1] + limit.window - now
            decision = Decision(False, 0, retry_after, limit)
        else:
            decision = Decision(True, limit.count - used - cost, 0.0, limit)
            if record:
                log.window = limit.window
                times.extend([now] * cost)
        if not times:
            self._logs.pop(key, None)
        elif key not in self._logs:
            self._sweep(now)
            self._logs[key] = log
        return decision

    def _sweep(self, now: float) -> None:
        if len(self._logs) < self._sweep_at:
            return
        stale = [key for key, log in self._logs.items() if log.times[-1] <= now - log.window]
        for key in stale:
            del self._logs[key]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._logs))


# KEYS[1] the log; ARGV: count, window (µs), cost, record (1/0), a token unique to this call.
# Times are the Redis server's (TIME), so hub processes with skewed clocks still agree.
# Returns {allowed (1/0), remaining, retry_after (µs)}.
_SCRIPT = """
local key = KEYS[1]
local count, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local used = redis.call('ZCARD', key)
if used + cost > count then
  local nth = used + cost - count - 1
  local entry = redis.call('ZRANGE', key, nth, nth, 'WITHSCORES')
  return {0, 0, tonumber(entry[2]) + window - now}
end
if ARGV[4] == '1' then
  local stamp = clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])) .. ':' .. ARGV[5]
  for i = 1, cost do
    redis.call('ZADD', key, now, stamp .. ':' .. i)
  end
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
end
return {1, count - used - cost, 0}
"""


class RedisRateLimiter(RateLimiter):
    """Limits shared by every process on one Redis: a sorted set of hit times per key.

    The whole check-and-record is one Lua script, so it is atomic across connections and
    processes. Keys are `<prefix>rl:<key>` and expire one window after their latest hit.
    """

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._key_prefix = f"{prefix}rl:"
        self._script = redis.register_script(_SCRIPT)

    def redis_key(self, key: str) -> str:
        return self._key_prefix + key

    async def reset(self, key: str) -> None:
        await self._redis.delete(self.redis_key(key))

    async def _check(self, key: str, limit: Limit, *, cost: int, record: bool) -> Decision:
        window_us = max(1, round(limit.window * _MICROS))
        args: list[int | str] = [limit.count, window_us, cost, int(record), secrets.token_hex(8)]
        allowed, remaining, retry_us = await self._script(keys=[self.redis_key(key)], args=args)
        return Decision(bool(allowed), int(remaining), int(retry_us) / _MICROS, limit)


def create_rate_limiter(*, redis: Redis | None, prefix: str) -> RateLimiter:
    """Redis when a client is given (production, several processes), in-process otherwise."""
    if redis is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(redis, prefix=prefix)


__all__ = [
    "Decision",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "create_rate_limiter",
]
