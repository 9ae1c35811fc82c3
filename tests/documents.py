"""Test helpers for the files service: blobs through the app's store, versions through
`add_uploaded_version` (uploads over tus are tested elsewhere), events off the app's bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from api.keys import BLOBS, BUS, DATABASE
from core.bus import Event
from db.models.files import FileVersion, ScanStatus
from storage.documents import add_uploaded_version
from tests.blobs import stream

Client = TestClient[Any, Any]


def app_of(client: Client) -> Application:
    assert client.app is not None
    return client.app


async def add_version(
    client: Client,
    *,
    owner_id: UUID,
    data: bytes,
    name: str = "notes.txt",
    mime_type: str = "text/plain",
    kind: str = "txt",
    folder_id: UUID | None = None,
    file_id: UUID | None = None,
    scan_status: ScanStatus = ScanStatus.CLEAN,
    facts: dict[str, Any] | None = None,
) -> FileVersion:
    app = app_of(client)
    blob = await app[BLOBS].put_stream(stream(data))
    with app[DATABASE].activated():
        return await add_uploaded_version(
            owner_id=owner_id,
            blob=blob,
            filename=name,
            mime_type=mime_type,
            kind=kind,
            folder_id=folder_id,
            file_id=file_id,
            scan_status=scan_status,
            type_facts=facts or {},
            upload_id=None,
            bus=app[BUS],
        )


async def set_version_fields(client: Client, version_id: UUID, **fields: Any) -> None:
    with app_of(client)[DATABASE].activated():
        await FileVersion.filter(id=version_id).update(**fields)


@asynccontextmanager
async def recorded_events(client: Client, pattern: str = "file.*") -> AsyncIterator[list[Event]]:
    """Events of `pattern` published on the app's bus while the block runs (drained at exit)."""
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    subscription = await app_of(client)[BUS].subscribe(pattern, record)
    try:
        yield seen
        await asyncio.wait_for(subscription.drain(), 5)
    finally:
        await subscription.close()
