"""The Redis bus on the real Redis: two bus instances (two processes' worth) see each other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.bus import Event, RedisBus, create_bus


@pytest.fixture
async def buses(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    clients = [
        Redis.from_url(redis_url, client_name=f"{redis_prefix}node-a"),
        Redis.from_url(redis_url, client_name=f"{redis_prefix}node-b"),
    ]
    pair = (RedisBus(clients[0], prefix=redis_prefix), RedisBus(clients[1], prefix=redis_prefix))
    for bus in pair:
        await bus.start()
    yield pair
    for bus in pair:
        await bus.close()
    for client in clients:
        await client.aclose()


class Collector:
    def __init__(self, expected: int) -> None:
        self.events: list[Event] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) >= self.expected:
            self.done.set()

    async def wait(self) -> list[Event]:
        await asyncio.wait_for(self.done.wait(), 5)
        return self.events


async def test_events_cross_between_two_buses(buses: tuple[RedisBus, RedisBus]) -> None:
    node_a, node_b = buses
    on_b = Collector(expected=3)
    on_a = Collector(expected=3)
    await node_b.subscribe("chat.*", on_b)
    await node_a.subscribe("chat.*", on_a)

    sent = [await node_a.emit("chat.message_created", {"seq": n}, actor_id="u1") for n in (1, 2, 3)]

    received = await on_b.wait()
    assert [e.id for e in received] == [e.id for e in sent]
    assert received[0] == sent[0]  # the whole envelope survives the trip
    assert [e.id for e in await on_a.wait()] == [e.id for e in sent]


async def test_overlapping_patterns_deliver_once_each(buses: tuple[RedisBus, RedisBus]) -> None:
    node_a, node_b = buses
    specific = Collector(expected=1)
    everything = Collector(expected=2)
    await node_b.subscribe("render.progress", specific)
    await node_b.subscribe("*", everything)

    await node_a.emit("render.progress", {"percent": 10})
    await node_a.emit("file.uploaded", {"name": "part.step"})

    assert [e.type for e in await everything.wait()] == ["render.progress", "file.uploaded"]
    await asyncio.sleep(0.05)
    assert [e.type for e in specific.events] == ["render.progress"]


async def test_prefixes_isolate_deployments(redis: Redis, redis_prefix: str) -> None:
    ours = RedisBus(redis, prefix=redis_prefix)
    theirs = RedisBus(redis, prefix=redis_prefix + "other:")
    await ours.start()
    await theirs.start()
    seen = Collector(expected=1)
    await ours.subscribe("order.*", seen)
    await theirs.emit("order.paid", {"order": 1})
    await ours.emit("order.paid", {"order": 2})
    events = await seen.wait()
    await asyncio.sleep(0.05)
    assert [e.data["order"] for e in events] == [2]
    assert ours.channel("order.paid") == f"{redis_prefix}bus:order.paid"
    await ours.close()
    await theirs.close()


async def test_unsubscribed_pattern_stops_listening(buses: tuple[RedisBus, RedisBus]) -> None:
    node_a, node_b = buses
    first = Collector(expected=1)
    sub = await node_b.subscribe("form.submitted", first)
    await node_a.emit("form.submitted", {"n": 1})
    await first.wait()
    await sub.close()
    later = Collector(expected=1)
    await node_b.subscribe("security.event", later)
    await node_a.emit("form.submitted", {"n": 2})
    await node_a.emit("security.event", {"n": 3})
    assert [e.data["n"] for e in await later.wait()] == [3]
    assert [e.data["n"] for e in first.events] == [1]


async def test_reader_survives_a_dropped_connection(
    buses: tuple[RedisBus, RedisBus], redis: Redis, redis_prefix: str
) -> None:
    node_a, node_b = buses
    seen = Collector(expected=1)
    await node_b.subscribe("order.created", seen)
    await node_a.emit("order.created", {"n": 1})
    await seen.wait()
    seen.expected = 2
    seen.done.clear()

    # Cut node b's subscriber connection, as a network blip or a Redis restart would.
    subscribers = await redis.client_list(_type="pubsub")
    ours = [c["id"] for c in subscribers if c["name"] == f"{redis_prefix}node-b"]
    assert len(ours) == 1
    assert await redis.client_kill_filter(_id=ours[0]) == 1

    # Keep publishing until the reader has reconnected and re-subscribed.
    async def publish_until_seen() -> None:
        while not seen.done.is_set():
            await node_a.emit("order.created", {"n": 2})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.done.wait(), 0.05)

    await asyncio.wait_for(publish_until_seen(), 10)
    assert seen.events[1].data["n"] == 2


async def test_create_bus_picks_the_backend(redis: Redis) -> None:
    assert type(create_bus(redis=redis, prefix="x:")).__name__ == "RedisBus"
    assert type(create_bus(redis=None, prefix="x:")).__name__ == "MemoryBus"


async def test_subscribing_while_redis_is_away_does_not_fail(unused_tcp_port: int) -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_connect_timeout=0.2)
    bus = RedisBus(client, prefix="away:")
    await bus.start()
    subscription = await bus.subscribe("chat.*", Collector(expected=1))
    assert subscription.pattern == "chat.*"
    await asyncio.sleep(0.1)  # the reader retries in the background without crashing
    assert bus._reader is not None
    assert not bus._reader.done()
    await bus.close()
    await client.aclose()
