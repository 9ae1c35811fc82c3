"""The Redis limiter on the real Redis: one budget however many hub processes spend it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.rate_limit import Decision, Limit, RedisRateLimiter, create_rate_limiter


@pytest.fixture
def limiter(redis: Redis, redis_prefix: str) -> RedisRateLimiter:
    return RedisRateLimiter(redis, prefix=redis_prefix)


@pytest.fixture
async def two_processes(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    """Two limiters on two clients (two connection pools), as two hub processes would have."""
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    yield (
        RedisRateLimiter(clients[0], prefix=redis_prefix),
        RedisRateLimiter(clients[1], prefix=redis_prefix),
    )
    for client in clients:
        await client.aclose()


async def test_allows_up_to_count_then_refuses_with_retry_after(
    limiter: RedisRateLimiter,
) -> None:
    limit = Limit(count=3, window=10.0)

    decisions = [await limiter.hit("login:1.2.3.4", limit) for _ in range(4)]

    assert [(d.allowed, d.remaining, d.retry_after) for d in decisions[:3]] == [
        (True, 2, 0.0),
        (True, 1, 0.0),
        (True, 0, 0.0),
    ]
    refused = decisions[3]
    assert (refused.allowed, refused.remaining, refused.limit) == (False, 0, limit)
    assert 9.0 < refused.retry_after <= 10.0


async def test_the_window_slides_one_hit_at_a_time(limiter: RedisRateLimiter) -> None:
    limit = Limit(count=2, window=1.0)
    assert (await limiter.hit("k", limit)).allowed  # t=0
    await asyncio.sleep(0.4)
    assert (await limiter.hit("k", limit)).allowed  # t=0.4

    refused = await limiter.hit("k", limit)
    assert not refused.allowed
    assert 0.3 < refused.retry_after <= 0.6  # the first hit ages out at t=1.0

    await asyncio.sleep(refused.retry_after + 0.02)
    freed = await limiter.hit("k", limit)
    refused_again = await limiter.hit("k", limit)

    assert freed == Decision(allowed=True, remaining=0, retry_after=0.0, limit=limit)
    assert not refused_again.allowed
    assert 0.0 < refused_again.retry_after <= 0.4  # the second hit ages out at t=1.4


async def test_a_refused_hit_is_not_recorded(
    limiter: RedisRateLimiter, redis: Redis, redis_prefix: str
) -> None:
    limit = Limit(count=2, window=0.5)
    for _ in range(2):
        assert (await limiter.hit("k", limit)).allowed
    for _ in range(5):
        assert not (await limiter.hit("k", limit)).allowed
    assert await redis.zcard(f"{redis_prefix}rl:k") == 2

    await asyncio.sleep(0.55)

    assert await limiter.peek("k", limit) == Decision(True, 1, 0.0, limit)
    assert (await limiter.hit("k", limit, cost=2)).allowed


async def test_cost_spends_several_hits_at_once(
    limiter: RedisRateLimiter, redis: Redis, redis_prefix: str
) -> None:
    limit = Limit(count=5, window=10.0)

    first = await limiter.hit("upload:u1", limit, cost=3)
    too_big = await limiter.hit("upload:u1", limit, cost=3)
    fits = await limiter.hit("upload:u1", limit, cost=2)

    assert first == Decision(True, 2, 0.0, limit)
    assert (too_big.allowed, too_big.remaining) == (False, 0)
    assert 9.0 < too_big.retry_after <= 10.0
    assert fits == Decision(True, 0, 0.0, limit)
    # Entries of one call share a timestamp and still count one each.
    assert await redis.zcard(f"{redis_prefix}rl:upload:u1") == 5


async def test_peek_does_not_record(
    limiter: RedisRateLimiter, redis: Redis, redis_prefix: str
) -> None:
    limit = Limit(count=1, window=10.0)

    before = [await limiter.peek("k", limit) for _ in range(3)]
    assert await redis.exists(f"{redis_prefix}rl:k") == 0
    hit = await limiter.hit("k", limit)
    after = await limiter.peek("k", limit)

    assert before == [Decision(True, 0, 0.0, limit)] * 3
    assert hit == Decision(True, 0, 0.0, limit)
    assert not after.allowed
    assert 9.0 < after.retry_after <= 10.0
    assert await redis.zcard(f"{redis_prefix}rl:k") == 1


async def test_reset_forgets_a_key_only(limiter: RedisRateLimiter) -> None:
    limit = Limit(count=2, window=10.0)
    for key in ("a", "b"):
        for _ in range(2):
            await limiter.hit(key, limit)

    await limiter.reset("a")

    assert await limiter.peek("a", limit) == Decision(True, 1, 0.0, limit)
    assert not (await limiter.peek("b", limit)).allowed


async def test_two_processes_share_one_budget(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    node_a, node_b = two_processes
    limit = Limit(count=4, window=10.0)

    allowed = [
        (await node.hit("api:client-1", limit)).remaining
        for node in (node_a, node_b, node_a, node_b)
    ]

    assert allowed == [3, 2, 1, 0]
    assert not (await node_a.hit("api:client-1", limit)).allowed
    assert not (await node_b.hit("api:client-1", limit)).allowed
    await node_b.reset("api:client-1")
    assert (await node_a.hit("api:client-1", limit)).allowed


async def test_concurrent_hits_never_overspend(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter], redis: Redis, redis_prefix: str
) -> None:
    node_a, node_b = two_processes
    limit = Limit(count=10, window=10.0)

    decisions = await asyncio.gather(
        *(node.hit("burst", limit) for _ in range(25) for node in (node_a, node_b))
    )

    assert len(decisions) == 50
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))
    assert await redis.zcard(f"{redis_prefix}rl:burst") == 10


async def test_keys_carry_the_prefix_and_expire(
    limiter: RedisRateLimiter, redis: Redis, redis_prefix: str
) -> None:
    await limiter.hit("login:1.2.3.4", Limit(count=5, window=0.3))

    key = f"{redis_prefix}rl:login:1.2.3.4"
    assert limiter.redis_key("login:1.2.3.4") == key
    assert [k async for k in redis.scan_iter(match=f"{redis_prefix}*")] == [key.encode()]
    assert 0 < await redis.pttl(key) <= 300

    await asyncio.sleep(0.35)
    assert await redis.exists(key) == 0


async def test_hit_times_come_from_the_redis_server_clock(
    limiter: RedisRateLimiter, redis: Redis, redis_prefix: str
) -> None:
    seconds, micros = await redis.time()
    await limiter.hit("k", Limit(count=5, window=10.0), cost=2)

    key = f"{redis_prefix}rl:k"
    members = await redis.zrange(key, 0, -1)
    server_now = seconds * 1_000_000 + micros
    assert len(members) == 2
    for member in members:
        assert isinstance(member, bytes)
        score = await redis.zscore(key, member)
        assert score is not None
        assert 0 <= score - server_now < 1_000_000
        assert member.decode().startswith(f"{int(score) // 1_000_000}.")


async def test_create_rate_limiter_picks_redis_when_given(redis: Redis) -> None:
    limiter = create_rate_limiter(redis=redis, prefix="x:")
    assert isinstance(limiter, RedisRateLimiter)
    await limiter.close()  # the shared client stays open: it is its owner's to close
    assert await redis.ping()
