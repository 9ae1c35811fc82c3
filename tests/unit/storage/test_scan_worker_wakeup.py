"""The scan worker's loop does not lose a wake-up: `file.version_created` arriving while a batch
runs makes the next batch start at once, not after the poll interval."""

from __future__ import annotations

import asyncio

from core.bus.memory import MemoryBus
from storage.blobs.local import LocalBlobStore
from storage.scan import NullScanner
from storage.scanning import ScanOutcome, ScanWorker


async def test_news_during_a_batch_starts_the_next_one_at_once(tmp_path: object) -> None:
    worker = ScanWorker(
        store=LocalBlobStore(tmp_path),  # type: ignore[arg-type]
        scanner=NullScanner(),
        bus=MemoryBus(),
        retry_seconds=1.0,
        poll_seconds=60.0,  # a missed wake-up would leave the worker idle this long
    )
    batches = 0
    second_batch = asyncio.Event()

    async def scan_due() -> list[ScanOutcome]:
        nonlocal batches
        batches += 1
        if batches == 1:
            await worker._on_created(None)  # type: ignore[arg-type]  # news mid-batch
        else:
            second_batch.set()
        return []

    async def idle_seconds() -> float:
        return worker.poll_seconds

    worker.scan_due = scan_due  # type: ignore[method-assign,assignment]
    worker._idle_seconds = idle_seconds  # type: ignore[method-assign]
    task = asyncio.create_task(worker._run())
    try:
        await asyncio.wait_for(second_batch.wait(), 5)
    finally:
        task.cancel()
    assert batches >= 2
