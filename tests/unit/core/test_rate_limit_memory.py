"""The in-process limiter on a fake clock: time moves only when a test says so."""

from __future__ import annotations

import pytest

from core.rate_limit import Decision, Limit, MemoryRateLimiter, create_rate_limiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock=clock)


LIMIT = Limit(count=3, window=10.0)


async def test_allows_up_to_count_then_refuses_with_retry_after(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    decisions = []
    for _ in range(3):
        decisions.append(await limiter.hit("login:1.2.3.4", LIMIT))
        clock.advance(1.0)

    refused = await limiter.hit("login:1.2.3.4", LIMIT)

    assert decisions == [
        Decision(allowed=True, remaining=2, retry_after=0.0, limit=LIMIT),
        Decision(allowed=True, remaining=1, retry_after=0.0, limit=LIMIT),
        Decision(allowed=True, remaining=0, retry_after=0.0, limit=LIMIT),
    ]
    # The oldest hit (t=1000) ages out at t=1010; it is now t=1003.
    assert refused == Decision(allowed=False, remaining=0, retry_after=7.0, limit=LIMIT)


async def test_the_window_slides_one_hit_at_a_time(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    await limiter.hit("k", LIMIT)  # t=1000
    clock.advance(4.0)
    await limiter.hit("k", LIMIT)  # t=1004
    await limiter.hit("k", LIMIT)  # t=1004

    clock.advance(6.0)  # t=1010: only the first hit has aged out
    freed = await limiter.hit("k", LIMIT)
    refused = await limiter.hit("k", LIMIT)

    assert freed == Decision(allowed=True, remaining=0, retry_after=0.0, limit=LIMIT)
    assert refused == Decision(allowed=False, remaining=0, retry_after=4.0, limit=LIMIT)


async def test_a_burst_at_a_window_boundary_cannot_double_the_budget(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(count=5, window=10.0)
    clock.now = 1009.9  # the end of a fixed bucket [1000, 1010)
    assert all([(await limiter.hit("k", limit)).allowed for _ in range(5)])

    clock.now = 1010.1  # a fixed-bucket limiter would start afresh here
    refused = await limiter.hit("k", limit)

    assert not refused.allowed
    assert refused.retry_after == pytest.approx(9.8)


async def test_a_refused_hit_is_not_recorded(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    for _ in range(3):
        await limiter.hit("k", LIMIT)
    for _ in range(5):
        clock.advance(1.0)
        assert not (await limiter.hit("k", LIMIT)).allowed

    clock.advance(5.0)  # t=1010: the three admitted hits have aged out, the refusals never counted
    assert await limiter.peek("k", LIMIT) == Decision(True, 2, 0.0, LIMIT)
    assert (await limiter.hit("k", LIMIT, cost=3)).allowed


async def test_cost_spends_several_hits_at_once(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(count=5, window=10.0)
    first = await limiter.hit("upload:u1", limit, cost=3)
    clock.advance(2.0)
    too_big = await limiter.hit("upload:u1", limit, cost=3)
    fits = await limiter.hit("upload:u1", limit, cost=2)

    assert first == Decision(True, 2, 0.0, limit)
    # Needs one of the three t=1000 entries to age out: at t=1010, 8 s from now.
    assert too_big == Decision(False, 0, 8.0, limit)
    assert fits == Decision(True, 0, 0.0, limit)


async def test_retry_after_for_a_cost_counts_enough_old_hits(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(count=4, window=10.0)
    for _ in range(4):
        await limiter.hit("k", limit)  # t=1000, 1001, 1002, 1003
        clock.advance(1.0)

    refused = await limiter.hit("k", limit, cost=3)

    # Three slots are free once the t=1002 hit ages out at t=1012; it is now t=1004.
    assert refused == Decision(False, 0, 8.0, limit)


async def test_peek_does_not_record(limiter: MemoryRateLimiter) -> None:
    limit = Limit(count=1, window=10.0)
    before = [await limiter.peek("k", limit) for _ in range(3)]
    hit = await limiter.hit("k", limit)
    after = await limiter.peek("k", limit)

    assert before == [Decision(True, 0, 0.0, limit)] * 3
    assert hit == Decision(True, 0, 0.0, limit)
    assert after == Decision(False, 0, 10.0, limit)
    assert len(limiter) == 1


async def test_reset_forgets_a_key_only(limiter: MemoryRateLimiter) -> None:
    for key in ("a", "b"):
        for _ in range(3):
            await limiter.hit(key, LIMIT)

    await limiter.reset("a")
    await limiter.reset("never-seen")

    assert await limiter.peek("a", LIMIT) == Decision(True, 2, 0.0, LIMIT)
    assert not (await limiter.peek("b", LIMIT)).allowed


async def test_keys_are_independent(limiter: MemoryRateLimiter) -> None:
    limit = Limit(count=1, window=10.0)
    assert (await limiter.hit("a", limit)).allowed
    assert not (await limiter.hit("a", limit)).allowed
    assert (await limiter.hit("b", limit)).allowed


async def test_keys_whose_hits_aged_out_are_dropped(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    await limiter.hit("k", LIMIT)
    clock.advance(10.0)

    assert await limiter.peek("k", LIMIT) == Decision(True, 2, 0.0, LIMIT)
    assert len(limiter) == 0


async def test_keys_never_seen_again_are_swept_as_keys_grow(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    short = Limit(count=1, window=1.0)
    for n in range(1023):
        await limiter.hit(f"old:{n}", short)
    await limiter.hit("live", LIMIT)
    assert len(limiter) == 1024

    clock.advance(5.0)  # the old keys' hits have aged out; "live" is still in its window
    for n in range(10):
        await limiter.hit(f"new:{n}", short)

    assert len(limiter) == 11
    assert not (await limiter.hit("live", Limit(count=1, window=10.0))).allowed


async def test_close_forgets_everything(limiter: MemoryRateLimiter) -> None:
    await limiter.hit("k", LIMIT)
    await limiter.close()
    assert len(limiter) == 0


@pytest.mark.parametrize("cost", [0, -1, 4])
async def test_a_cost_that_could_never_pass_is_a_bug(limiter: MemoryRateLimiter, cost: int) -> None:
    with pytest.raises(ValueError, match="cost must be between 1 and 3"):
        await limiter.hit("k", LIMIT, cost=cost)
    assert len(limiter) == 0


@pytest.mark.parametrize(("count", "window"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, float("nan"))])
def test_a_limit_needs_a_positive_count_and_window(count: int, window: float) -> None:
    with pytest.raises(ValueError, match="a limit needs count >= 1 and window > 0"):
        Limit(count=count, window=window)


async def test_without_redis_the_limiter_is_in_process_on_the_real_clock() -> None:
    limiter = create_rate_limiter(redis=None, prefix="x:")
    assert isinstance(limiter, MemoryRateLimiter)
    assert (await limiter.hit("k", Limit(count=1, window=60.0))).allowed
    assert not (await limiter.hit("k", Limit(count=1, window=60.0))).allowed
