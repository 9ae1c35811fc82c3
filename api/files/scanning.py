"""The scan worker's place in the app: started once the database, the bus, the blob store and
the scanner are up (`storage.scanning.ScanWorker`), stopped before they close."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.keys import BLOBS, BUS, SCAN_WORKER, SCANNER, SETTINGS
from storage.scanning import ScanWorker


async def scan_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = ScanWorker(
        store=app[BLOBS],
        scanner=app[SCANNER],
        bus=app[BUS],
        retry_seconds=app[SETTINGS].scan_retry_seconds,
    )
    await worker.start()
    app[SCAN_WORKER] = worker
    try:
        yield
    finally:
        await worker.stop()
