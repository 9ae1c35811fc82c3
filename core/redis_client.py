"""The service's one Redis client (a connection pool), opened from `REDIS_URL`."""

from __future__ import annotations

from redis.asyncio import Redis


def open_redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
