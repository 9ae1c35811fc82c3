"""Each notification is routed by exactly one hub node: the claim in Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from hub.router import LocalClaims, RedisClaims, create_claims


async def test_exactly_one_node_wins_a_claim(redis: Redis, redis_prefix: str) -> None:
    nodes = [RedisClaims(redis, prefix=redis_prefix) for _ in range(4)]
    results = await asyncio.gather(*(node.first("route:n1") for node in nodes))
    assert sorted(results) == [False, False, False, True]
    assert await nodes[0].first("route:n2") is True
    assert 0 < await redis.ttl(f"{redis_prefix}claim:route:n1") <= 24 * 3600


async def test_the_embedded_mode_needs_no_claim(redis: Redis) -> None:
    assert isinstance(create_claims(redis=None, prefix="x:"), LocalClaims)
    assert await LocalClaims().first("anything") is True
    assert isinstance(create_claims(redis=redis, prefix="x:"), RedisClaims)
