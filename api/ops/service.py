"""Readiness: is every dependency this process needs answering right now?"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from tortoise.exceptions import BaseORMException

from core.logs import get_logger
from db.connection import Database
from storage.scan import NullScanner, Scanner

log = get_logger(__name__)

CHECK_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(status == "ok" for status in self.checks.values())


async def _run(name: str, probe: Callable[[], Awaitable[object]]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return name, "timeout"
    except (OSError, RedisError, BaseORMException) as exc:
        log.warning("readiness.check_failed", check=name, error=str(exc))
        return name, "unavailable"
    return name, "ok"


async def check_readiness(
    *, database: Database, redis: Redis | None, scanner: Scanner | None = None
) -> Readiness:
    """The database always; Redis and clamd when this deployment uses them."""
    probes: list[tuple[str, Callable[[], Awaitable[object]]]] = [("database", database.ping)]
    if redis is not None:
        probes.append(("redis", redis.ping))
    if scanner is not None and not isinstance(scanner, NullScanner):

        async def clamd() -> None:
            if not await scanner.ping():
                raise OSError("clamd did not answer PING")

        probes.append(("clamd", clamd))
    results = await asyncio.gather(*(_run(name, probe) for name, probe in probes))
    return Readiness(checks=dict(results))
