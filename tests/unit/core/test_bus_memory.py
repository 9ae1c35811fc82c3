from __future__ import annotations

import asyncio

import pytest

from core.bus import Event, MemoryBus, check_event_type


async def test_subscribers_get_matching_events_in_order() -> None:
    bus = MemoryBus()
    await bus.start()
    chat: list[str] = []
    everything: list[str] = []
    chat_sub = await bus.subscribe("chat.*", lambda e: _append(chat, e))
    all_sub = await bus.subscribe("*", lambda e: _append(everything, e))

    for n in range(5):
        await bus.emit("chat.message_created", {"n": n}, actor_id="u1", subject="conversation:1")
    await bus.emit("file.uploaded", {"name": "a.stl"})
    await chat_sub.drain()
    await all_sub.drain()

    assert chat == [
        "chat.message_created:0",
        "chat.message_created:1",
        "chat.message_created:2",
        "chat.message_created:3",
        "chat.message_created:4",
    ]
    assert everything[-1] == "file.uploaded:None"
    assert len(everything) == 6
    await bus.close()


async def _append(sink: list[str], event: Event) -> None:
    sink.append(f"{event.type}:{event.data.get('n')}")


async def test_a_failing_handler_keeps_its_subscription() -> None:
    bus = MemoryBus()
    seen: list[int] = []

    async def handler(event: Event) -> None:
        if event.data["n"] == 0:
            raise RuntimeError("boom")
        seen.append(event.data["n"])

    sub = await bus.subscribe("render.progress", handler)
    await bus.emit("render.progress", {"n": 0})
    await bus.emit("render.progress", {"n": 1})
    await sub.drain()
    assert seen == [1]
    await bus.close()


async def test_a_slow_subscriber_loses_its_oldest_events_not_the_publisher() -> None:
    bus = MemoryBus(queue_size=3)
    release = asyncio.Event()
    got: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()
        got.append(event.data["n"])

    fast_got: list[int] = []

    async def fast(event: Event) -> None:
        fast_got.append(event.data["n"])

    slow_sub = await bus.subscribe("order.*", slow)
    fast_sub = await bus.subscribe("order.*", fast)
    await bus.emit("order.created", {"n": 0})
    await asyncio.sleep(0)  # the slow handler takes event 0 and blocks
    for n in range(1, 8):
        await bus.emit("order.created", {"n": n})
        await asyncio.sleep(0)  # the fast handler keeps up
    await fast_sub.drain()
    assert fast_got == list(range(8))
    release.set()
    await slow_sub.drain()
    assert got == [0, 5, 6, 7]
    assert slow_sub.dropped == 4
    await bus.close()


async def test_closed_subscription_gets_nothing_more() -> None:
    bus = MemoryBus()
    seen: list[str] = []
    sub = await bus.subscribe("file.*", lambda e: _append(seen, e))
    await bus.emit("file.uploaded")
    await sub.drain()
    await sub.close()
    await bus.emit("file.uploaded")
    await asyncio.sleep(0)
    assert seen == ["file.uploaded:None"]
    await sub.close()  # twice is harmless
    await bus.close()


def test_envelope_round_trips_as_json() -> None:
    event = Event(type="order.paid", actor_id="u1", subject="order:9", data={"amount": 1200})
    again = Event.from_json(event.to_json())
    assert again == event
    assert len(event.id) == 36
    assert event.occurred_at.tzinfo is not None


def test_event_ids_sort_by_creation() -> None:
    ids = [Event(type="order.paid").id for _ in range(50)]
    assert ids == sorted(ids)


@pytest.mark.parametrize("bad", ["chat", "Chat.created", "chat.", ".created", "chat.*", "a b.c"])
def test_event_types_are_noun_dot_verb(bad: str) -> None:
    with pytest.raises(ValueError, match=r"noun\.verb"):
        check_event_type(bad)


async def test_publish_refuses_a_bad_type() -> None:
    bus = MemoryBus()
    with pytest.raises(ValueError, match=r"noun\.verb"):
        await bus.emit("nonsense")
    check_event_type("chat.message_created")
