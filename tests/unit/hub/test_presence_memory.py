from __future__ import annotations

from hub.presence import Activity, MemoryPresenceStore, Status


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_online_while_any_lease_lives_then_offline_after_the_grace() -> None:
    clock = Clock()
    store = MemoryPresenceStore(clock=clock)
    assert await store.lease("u", "tab1", ttl=30) is True
    assert await store.lease("u", "tab2", ttl=30) is False  # already online
    assert await store.release("u", "tab1", grace=10) == 1
    assert (await store.get("u")).online is True
    assert await store.release("u", "tab2", grace=10) == 0
    assert await store.go_offline_if_due("u") is False  # the grace has not passed
    clock.now += 10
    assert await store.due_users() == ["u"]
    assert await store.go_offline_if_due("u") is True
    assert await store.go_offline_if_due("u") is False  # announced once
    assert (await store.get("u")).online is False


async def test_a_reconnect_within_the_grace_keeps_the_user_online() -> None:
    clock = Clock()
    store = MemoryPresenceStore(clock=clock)
    await store.lease("u", "old", ttl=30)
    await store.release("u", "old", grace=10)
    clock.now += 5
    assert await store.lease("u", "new", ttl=30) is False
    clock.now += 10
    assert await store.go_offline_if_due("u") is False
    assert await store.due_users() == []


async def test_leases_of_a_dead_node_run_out_with_the_ttl() -> None:
    clock = Clock()
    store = MemoryPresenceStore(clock=clock)
    await store.lease("u", "conn", ttl=30)  # and then the node dies: no release, no heartbeat
    clock.now += 29
    assert await store.due_users() == []
    clock.now += 1
    assert await store.due_users() == ["u"]
    assert await store.go_offline_if_due("u") is True


async def test_status_and_activity_are_remembered() -> None:
    store = MemoryPresenceStore(clock=Clock())
    await store.lease("staff", "c", ttl=30)
    await store.set_choice("staff", status=Status.BUSY, activity=None)
    await store.set_choice("staff", status=None, activity=Activity.IDLE)
    state = await store.get("staff")
    assert (state.status, state.activity) == (Status.BUSY, Activity.IDLE)
    assert state.wire()["status"] == "busy"
    await store.release("staff", "c", grace=0)
    await store.go_offline_if_due("staff")
    assert (await store.get("staff")).wire()["status"] == "offline"


async def test_expired_leases_among_many_tabs_are_dropped_and_renewed_ones_kept() -> None:
    clock = Clock()
    store = MemoryPresenceStore(clock=clock)
    for n in range(1000):
        await store.lease("u", f"tab{n}", ttl=30)
    clock.now += 20
    for n in range(0, 1000, 2):  # the heartbeat renews the even tabs only
        await store.lease("u", f"tab{n}", ttl=30)
    clock.now += 15  # the odd tabs' leases have run out
    assert await store.release("u", "tab0", grace=10) == 499
    clock.now += 40  # and now every lease has
    assert await store.release("u", "tab2", grace=10) == 0
    clock.now += 10
    assert await store.go_offline_if_due("u") is True
