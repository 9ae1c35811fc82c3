"""Files over REST on SQLite and PostgreSQL: versions and rollback (with their events),
gap-free numbering under concurrency, downloads (Range, ETag, 304, 416, scan states), diffs."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import DATABASE, KEYS
from core.settings import Settings
from db.models.files import File, FileVersion, ScanStatus
from tests.blobs import pattern
from tests.documents import add_version, app_of, recorded_events, set_version_fields
from tests.identity import sign_in

Client = TestClient[Any, Any]


async def test_versions_rollback_and_their_events(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    async with recorded_events(client) as events:
        v1 = await add_version(client, owner_id=owner.user_id, data=b"first\n", name="notes.txt")
        file_id = v1.file_id  # type: ignore[attr-defined]
        v2 = await add_version(
            client, owner_id=owner.user_id, data=b"second\n", name="notes-2.txt", file_id=file_id
        )
    assert (v1.number, v2.number) == (1, 2)
    assert [e.type for e in events] == [
        "file.uploaded",
        "file.version_created",
        "file.uploaded",
        "file.version_created",
    ]
    assert events[2].data == {
        "file_id": str(file_id),
        "version_id": str(v2.id),
        "version": 2,
        "owner_id": str(owner.user_id),
        "name": "notes.txt",  # the file keeps its name; the upload's is the version's
        "size": 7,
        "kind": "txt",
        "mime_type": "text/plain",
        "upload_id": None,
    }
    assert events[3].data == {
        "file_id": str(file_id),
        "version_id": str(v2.id),
        "version": 2,
        "owner_id": str(owner.user_id),
        "blob_key": hashlib.sha256(b"second\n").hexdigest(),
        "kind": "txt",
        "restored_from": None,
    }

    listed = await (
        await client.get(f"/api/v1/files/{file_id}/versions", headers=owner.headers)
    ).json()
    assert [(v["number"], v["original_name"]) for v in listed["items"]] == [
        (2, "notes-2.txt"),
        (1, "notes.txt"),
    ]

    async with recorded_events(client) as events:
        restored = await client.post(
            f"/api/v1/files/{file_id}/versions/1/restore", headers=owner.headers
        )
    assert restored.status == 201
    body = await restored.json()
    assert (body["number"], body["restored_from"], body["sha256"]) == (
        3,
        1,
        hashlib.sha256(b"first\n").hexdigest(),
    )
    assert [(e.type, e.data["version"], e.data["restored_from"]) for e in events] == [
        ("file.version_created", 3, 1)
    ]
    detail = await (await client.get(f"/api/v1/files/{file_id}", headers=owner.headers)).json()
    assert (detail["current_version"], detail["size"], detail["access"]) == (3, 6, "owner")
    current = await client.get(f"/api/v1/files/{file_id}/download", headers=owner.headers)
    assert await current.read() == b"first\n"
    old = await client.get(f"/api/v1/files/{file_id}/versions/2/download", headers=owner.headers)
    assert await old.read() == b"second\n"

    again = await client.post(f"/api/v1/files/{file_id}/versions/3/restore", headers=owner.headers)
    assert (again.status, (await again.json())["error"]["code"]) == (422, "version_is_current")
    missing = await client.post(
        f"/api/v1/files/{file_id}/versions/9/restore", headers=owner.headers
    )
    assert (missing.status, (await missing.json())["error"]["code"]) == (404, "version_not_found")
    with app_of(client)[DATABASE].activated():
        assert await FileVersion.filter(file_id=file_id).count() == 3


async def test_concurrent_versions_are_numbered_without_gaps(
    client: Client, settings: Settings
) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    first = await add_version(client, owner_id=owner.user_id, data=b"v1")
    file_id = first.file_id  # type: ignore[attr-defined]
    made = await asyncio.gather(
        *(
            add_version(client, owner_id=owner.user_id, data=f"v{n}".encode(), file_id=file_id)
            for n in range(2, 8)
        )
    )
    assert sorted(v.number for v in made) == [2, 3, 4, 5, 6, 7]
    with app_of(client)[DATABASE].activated():
        file = await File.get(id=file_id)
        assert file.current_version == 7
        numbers = await FileVersion.filter(file_id=file_id).values_list("number", flat=True)
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[type-var]


async def test_download_headers_ranges_and_conditionals(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    data = pattern(700_000, seed=3)
    version = await add_version(
        client,
        owner_id=owner.user_id,
        data=data,
        name="Zeichnung ä.bin",
        mime_type="application/octet-stream",
        kind="bin",
    )
    url = f"/api/v1/files/{version.file_id}/versions/1/download"  # type: ignore[attr-defined]
    etag = f'"{hashlib.sha256(data).hexdigest()}"'

    full = await client.get(url, headers=owner.headers)
    assert full.status == 200
    assert await full.read() == data
    assert full.headers["ETag"] == etag
    assert full.headers["Content-Type"] == "application/octet-stream"
    assert full.headers["Content-Length"] == str(len(data))
    assert full.headers["Cache-Control"] == "private, no-cache"
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Disposition"] == (
        "attachment; filename=\"Zeichnung _.bin\"; filename*=UTF-8''Zeichnung%20%C3%A4.bin"
    )

    part = await client.get(url, headers={**owner.headers, "Range": "bytes=300000-300099"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 300000-300099/{len(data)}"
    assert await part.read() == data[300000:300100]
    tail = await client.get(url, headers={**owner.headers, "Range": "bytes=-10"})
    assert (tail.status, await tail.read()) == (206, data[-10:])
    rest = await client.get(url, headers={**owner.headers, "Range": "bytes=699990-"})
    assert (rest.status, await rest.read()) == (206, data[699990:])
    beyond_end = await client.get(url, headers={**owner.headers, "Range": "bytes=699990-999999"})
    assert (beyond_end.status, await beyond_end.read()) == (206, data[699990:])

    unsatisfiable = await client.get(url, headers={**owner.headers, "Range": "bytes=700000-"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{len(data)}"
    assert (await unsatisfiable.json())["error"]["code"] == "range_not_satisfiable"
    several = await client.get(url, headers={**owner.headers, "Range": "bytes=0-1,5-6"})
    assert (several.status, len(await several.read())) == (200, len(data))

    cached = await client.get(url, headers={**owner.headers, "If-None-Match": etag})
    assert cached.status == 304
    assert cached.headers["ETag"] == etag
    assert await cached.read() == b""
    other = await client.get(url, headers={**owner.headers, "If-None-Match": '"abc"'})
    assert other.status == 200
    await other.read()

    stale = await client.get(
        url, headers={**owner.headers, "Range": "bytes=0-9", "If-Range": '"old"'}
    )
    assert (stale.status, len(await stale.read())) == (200, len(data))
    fresh = await client.get(url, headers={**owner.headers, "Range": "bytes=0-9", "If-Range": etag})
    assert (fresh.status, await fresh.read()) == (206, data[:10])

    head = await client.head(url, headers=owner.headers)
    assert (head.status, head.headers["Content-Length"]) == (200, str(len(data)))


async def test_only_clean_or_unscanned_versions_download(
    client: Client, settings: Settings
) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    version = await add_version(
        client, owner_id=owner.user_id, data=b"x", scan_status=ScanStatus.PENDING
    )
    url = f"/api/v1/files/{version.file_id}/download"  # type: ignore[attr-defined]
    cases = [
        (ScanStatus.PENDING, 409, "file_not_scanned"),
        (ScanStatus.INFECTED, 423, "file_quarantined"),
        (ScanStatus.FAILED, 423, "file_scan_failed"),
    ]
    for status, http, code in cases:
        await set_version_fields(client, version.id, scan_status=status)
        refused = await client.get(url, headers=owner.headers)
        assert (refused.status, (await refused.json())["error"]["code"]) == (http, code)
    for status in (ScanStatus.CLEAN, ScanStatus.UNSCANNED):
        await set_version_fields(client, version.id, scan_status=status)
        served = await client.get(url, headers=owner.headers)
        assert (served.status, await served.read()) == (200, b"x")


async def test_text_diff_and_its_limits(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    v1 = await add_version(client, owner_id=owner.user_id, data=b"a\nb\nc\n", name="spec.txt")
    file_id = v1.file_id  # type: ignore[attr-defined]
    await add_version(client, owner_id=owner.user_id, data=b"a\nB\nc\n", file_id=file_id)
    diff = await client.get(f"/api/v1/files/{file_id}/diff?from=1&to=2", headers=owner.headers)
    assert diff.status == 200
    assert await diff.json() == {
        "kind": "text",
        "from_version": 1,
        "to_version": 2,
        "identical": False,
        "unified": "--- spec.txt@v1\n+++ spec.txt@v2\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
        "changes": [],
    }

    big = await add_version(
        client, owner_id=owner.user_id, data=b"x\n" * (600 * 1024), file_id=file_id
    )
    too_large = await client.get(
        f"/api/v1/files/{file_id}/diff?from=1&to={big.number}", headers=owner.headers
    )
    assert (too_large.status, (await too_large.json())["error"]["code"]) == (422, "diff_too_large")
    binary = await add_version(
        client, owner_id=owner.user_id, data=b"\xff\xfe\x00", file_id=file_id
    )
    not_text = await client.get(
        f"/api/v1/files/{file_id}/diff?from=1&to={binary.number}", headers=owner.headers
    )
    assert (not_text.status, (await not_text.json())["error"]["code"]) == (422, "diff_not_text")
    await set_version_fields(client, binary.id, scan_status=ScanStatus.INFECTED)
    quarantined = await client.get(
        f"/api/v1/files/{file_id}/diff?from=1&to={binary.number}", headers=owner.headers
    )
    assert (quarantined.status, (await quarantined.json())["error"]["code"]) == (
        423,
        "file_quarantined",
    )
    bad_query = await client.get(f"/api/v1/files/{file_id}/diff?from=x&to=1", headers=owner.headers)
    assert bad_query.status == 422


async def test_cad_metadata_diff(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    v1 = await add_version(
        client,
        owner_id=owner.user_id,
        data=b"solid a",
        name="bracket.stl",
        mime_type="model/stl",
        kind="stl",
    )
    file_id = v1.file_id  # type: ignore[attr-defined]
    v2 = await add_version(
        client, owner_id=owner.user_id, data=b"solid b", file_id=file_id, kind="stl"
    )
    await set_version_fields(
        client,
        v1.id,
        metadata={
            "triangles": 1200,
            "volume": 10.5,
            "watertight": True,
            "bounding_box": {"size": [10, 20, 30]},
        },
    )
    await set_version_fields(
        client,
        v2.id,
        metadata={
            "triangles": 1500,
            "volume": 12.0,
            "watertight": True,
            "bounding_box": {"size": [10, 20, 35]},
            "units": "mm",
        },
    )
    # Metadata is facts, not content: a pending scan does not hide it.
    await set_version_fields(client, v2.id, scan_status=ScanStatus.PENDING)
    diff = await client.get(f"/api/v1/files/{file_id}/diff?from=1&to=2", headers=owner.headers)
    assert diff.status == 200
    body = await diff.json()
    assert (body["kind"], body["identical"], body["unified"]) == ("metadata", False, None)
    assert body["changes"] == [
        {"key": "bounding_box.size", "before": [10, 20, 30], "after": [10, 20, 35], "delta": None},
        {"key": "triangles", "before": 1200, "after": 1500, "delta": 300.0},
        {"key": "units", "before": None, "after": "mm", "delta": None},
        {"key": "volume", "before": 10.5, "after": 12.0, "delta": 1.5},
    ]

    other = await add_version(
        client,
        owner_id=owner.user_id,
        data=b"\x89PNG",
        name="x.png",
        mime_type="image/png",
        kind="png",
    )
    unsupported = await client.get(
        f"/api/v1/files/{other.file_id}/diff?from=1&to=1",  # type: ignore[attr-defined]
        headers=owner.headers,
    )
    assert (unsupported.status, (await unsupported.json())["error"]["code"]) == (
        422,
        "diff_unsupported",
    )
