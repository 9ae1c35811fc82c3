"""Dropped connections: a client that goes away in the middle of a PATCH keeps the bytes that
arrived; HEAD tells where to go on; the finished blob has the right sha256."""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

from aiohttp.test_utils import TestClient

from api.keys import BLOBS, KEYS, SETTINGS
from db.models.files import FileVersion
from storage.blobs.local import LocalBlobStore
from tests.identity import sign_in
from tests.tus import TusClient, handled_patches, patch_and_drop, sha256, stl, wait_for_patches

KB = 1024


async def test_twenty_uploads_interrupted_at_random_offsets_resume_to_the_right_blob(
    client: TestClient[Any, Any],
) -> None:
    account = await sign_in(client.app[SETTINGS].database_url, client.app[KEYS])
    tus = TusClient(client, account.token)
    base = str(client.make_url("/"))
    rng = random.Random(20)
    kept_total = 0
    for n in range(20):
        data = stl(rng.randrange(64 * KB, 1024 * KB), seed=100 + n)
        location = await tus.create(len(data), filename=f"part-{n}.stl")
        offset = 0
        for _ in range(rng.randrange(1, 4)):  # one to three drops per upload
            send = rng.randrange(1, len(data) - offset)
            handled = handled_patches(client.app)
            await patch_and_drop(
                base, location, account.token, offset=offset, total=data, send=send
            )
            await wait_for_patches(client.app, handled + 1)
            kept = await tus.offset(location)
            # What the server read before it saw the connection go is kept (all of it, or
            # less when the drop was noticed with bytes still unread in its buffer).
            assert offset <= kept <= offset + send, (n, offset, kept, send)
            kept_total += kept - offset
            offset = kept

        headers = await tus.resume(location, data)

        version = await FileVersion.get(file_id=UUID(headers["X-File-Id"]))
        assert (version.blob_key, version.size) == (sha256(data), len(data)), n
    store = client.app[BLOBS]
    assert isinstance(store, LocalBlobStore)
    assert list(store.uploads.iterdir()) == []
    assert await FileVersion.all().count() == 20
    assert kept_total > 0
