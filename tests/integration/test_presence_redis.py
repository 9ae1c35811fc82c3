"""Presence leases on the real Redis: two stores (two nodes) agree, transitions happen once."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from hub.presence import Activity, RedisPresenceStore, Status, create_presence_store


async def test_two_nodes_share_leases_and_only_one_announces(
    redis: Redis, redis_prefix: str
) -> None:
    node_a = RedisPresenceStore(redis, prefix=redis_prefix)
    node_b = RedisPresenceStore(redis, prefix=redis_prefix)
    assert await node_a.lease("u", "tab-on-a", ttl=30) is True
    assert await node_b.lease("u", "tab-on-b", ttl=30) is False
    assert await node_a.release("u", "tab-on-a", grace=0.2) == 1
    assert await node_b.release("u", "tab-on-b", grace=0.2) == 0
    assert await node_a.go_offline_if_due("u") is False
    await asyncio.sleep(0.25)
    results = await asyncio.gather(node_a.go_offline_if_due("u"), node_b.go_offline_if_due("u"))
    assert sorted(results) == [False, True]
    assert (await node_b.get("u")).online is False


async def test_dead_node_leases_expire_with_the_ttl(redis: Redis, redis_prefix: str) -> None:
    store = RedisPresenceStore(redis, prefix=redis_prefix)
    await store.lease("ghost", "conn", ttl=0.3)
    assert await store.due_users() == []
    await asyncio.sleep(0.35)
    assert await store.due_users() == ["ghost"]
    assert await store.go_offline_if_due("ghost") is True
    assert await store.due_users() == []


async def test_reconnect_within_grace_stays_online(redis: Redis, redis_prefix: str) -> None:
    store = RedisPresenceStore(redis, prefix=redis_prefix)
    await store.lease("u", "old", ttl=30)
    await store.release("u", "old", grace=0.3)
    assert await store.lease("u", "new", ttl=30) is False
    await asyncio.sleep(0.35)
    assert await store.go_offline_if_due("u") is False


async def test_choices_and_key_prefix(redis: Redis, redis_prefix: str) -> None:
    store = create_presence_store(redis=redis, prefix=redis_prefix)
    await store.lease("staff", "c", ttl=30)
    await store.set_choice("staff", status=Status.AWAY, activity=Activity.IDLE)
    state = await store.get("staff")
    assert state.wire() == {
        "user_id": "staff",
        "online": True,
        "status": "away",
        "activity": "idle",
    }
    assert await store.online_users(10) == ["staff"]
    keys = sorted([k.decode() async for k in redis.scan_iter(match=f"{redis_prefix}*")])
    assert keys == [
        f"{redis_prefix}presence:choice:staff",
        f"{redis_prefix}presence:leases:staff",
        f"{redis_prefix}presence:online",
    ]
    assert await redis.pttl(f"{redis_prefix}presence:leases:staff") > 0
