"""The in-process bus of the embedded mode: one process, no network, same semantics."""

from __future__ import annotations

from core.bus.base import Event, EventBus


class MemoryBus(EventBus):
    async def _publish(self, event: Event) -> None:
        self._deliver(event)
