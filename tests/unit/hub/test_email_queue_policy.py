"""The mail queue's backoff: doubling from the base, with jitter, capped."""

from __future__ import annotations

from hub.email.queue import MailPolicy


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = MailPolicy(max_attempts=6, base_delay=30.0, max_delay=3600.0)

    for attempts, step in [(1, 30.0), (2, 60.0), (3, 120.0), (10, 3600.0)]:
        delays = [policy.delay(attempts) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > 0  # jittered, so retries of a burst spread out
