"""Public share links on SQLite and PostgreSQL: token storage, metadata page, downloads and
their counting (also concurrent at the limit), expiry, passwords and their brute-force limit,
revocation, the access log, and what a stranger cannot do."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import DATABASE, KEYS
from core.clock import utcnow
from core.settings import Settings
from db.models.files import ScanStatus, ShareAccess, ShareLink
from tests.conftest import from_address
from tests.documents import add_version, app_of, set_version_fields
from tests.identity import SignedIn, sign_in

Client = TestClient[Any, Any]


async def _share(client: Client, owner: SignedIn, file_id: Any, **options: Any) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/files/{file_id}/shares", json=options, headers=owner.headers
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _outcomes(client: Client, share_id: str) -> list[str]:
    with app_of(client)[DATABASE].activated():
        rows = await ShareAccess.filter(link_id=share_id).order_by("at", "id")
    return [r.outcome for r in rows]


async def _code(response: Any) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]


async def test_link_view_download_and_access_log(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    version = await add_version(client, owner_id=owner.user_id, data=b"drawing", name="d.txt")
    created = await _share(client, owner, version.file_id)  # type: ignore[attr-defined]
    token = created["token"]
    assert len(token) >= 43  # 32 random bytes, base64url
    assert created["url"] == f"{settings.public_url.rstrip('/')}/api/v1/s/{token}"
    assert created["share"]["password_protected"] is False
    with app_of(client)[DATABASE].activated():
        link = await ShareLink.get(id=created["share"]["id"])
    assert link.token_digest == hashlib.sha256(token.encode()).hexdigest()
    expires_in = link.expires_at - utcnow()  # type: ignore[operator]
    assert timedelta(days=6, hours=23) < expires_in <= timedelta(days=7)

    page = await client.get(f"/api/v1/s/{token}", headers={"User-Agent": "probe/1"})
    assert page.status == 200
    assert await page.json() == {
        "name": "d.txt",
        "size": 7,
        "mime_type": "text/plain",
        "kind": "txt",
        "version": 1,
        "sha256": hashlib.sha256(b"drawing").hexdigest(),
        "downloadable": True,
        "scan_status": "clean",
        "expires_at": link.expires_at.isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
        "downloads_left": None,
        "download_url": f"/api/v1/s/{token}/download",
    }
    download = await client.get(f"/api/v1/s/{token}/download", headers=from_address(7))
    assert (download.status, await download.read()) == (200, b"drawing")
    assert download.headers["Content-Disposition"].startswith('attachment; filename="d.txt"')

    share_id = created["share"]["id"]
    log = await client.get(
        f"/api/v1/files/{version.file_id}/shares/{share_id}/accesses",  # type: ignore[attr-defined]
        headers=owner.headers,
    )
    items = (await log.json())["items"]
    assert [(a["outcome"], a["ip"]) for a in items] == [
        ("ok", "192.0.2.7"),
        ("viewed", "127.0.0.1"),
    ]
    assert items[1]["user_agent"] == "probe/1"

    unknown = await client.get("/api/v1/s/not-a-real-token")
    assert await _code(unknown) == (404, "share_not_found")
    listed = await client.get(
        f"/api/v1/files/{version.file_id}/shares",
        headers=owner.headers,  # type: ignore[attr-defined]
    )
    [entry] = (await listed.json())["items"]
    assert (entry["id"], entry["download_count"]) == (share_id, 1)
    assert "token" not in entry


async def test_fixed_version_expiry_and_revocation(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    v1 = await add_version(client, owner_id=owner.user_id, data=b"one")
    file_id = v1.file_id  # type: ignore[attr-defined]
    await add_version(client, owner_id=owner.user_id, data=b"two", file_id=file_id)
    pinned = await _share(client, owner, file_id, version=1)
    current = await _share(client, owner, file_id)
    assert await (await client.get(f"/api/v1/s/{pinned['token']}/download")).read() == b"one"
    assert await (await client.get(f"/api/v1/s/{current['token']}/download")).read() == b"two"
    missing = await client.post(
        f"/api/v1/files/{file_id}/shares", json={"version": 9}, headers=owner.headers
    )
    assert await _code(missing) == (404, "version_not_found")
    too_long = await client.post(
        f"/api/v1/files/{file_id}/shares",
        json={"expires_in_seconds": 91 * 86400},
        headers=owner.headers,
    )
    assert too_long.status == 422

    with app_of(client)[DATABASE].activated():
        await ShareLink.filter(id=pinned["share"]["id"]).update(
            expires_at=utcnow() - timedelta(seconds=1)
        )
    expired = await client.get(f"/api/v1/s/{pinned['token']}/download")
    assert await _code(expired) == (410, "share_expired")
    assert await _outcomes(client, pinned["share"]["id"]) == ["ok", "expired"]

    revoke_url = f"/api/v1/files/{file_id}/shares/{current['share']['id']}"
    revoked = await client.delete(revoke_url, headers=owner.headers)
    assert revoked.status == 200
    first_revocation = (await revoked.json())["revoked_at"]
    assert first_revocation is not None
    again = await client.delete(revoke_url, headers=owner.headers)
    assert (await again.json())["revoked_at"] == first_revocation
    for url in (f"/api/v1/s/{current['token']}", f"/api/v1/s/{current['token']}/download"):
        assert await _code(await client.get(url)) == (410, "share_revoked")
    assert await _outcomes(client, current["share"]["id"]) == ["ok", "revoked", "revoked"]


async def test_password_header_form_and_brute_force_limit(
    client: Client, settings: Settings
) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    version = await add_version(client, owner_id=owner.user_id, data=b"secret")
    created = await _share(client, owner, version.file_id, password="open sesame 42")  # type: ignore[attr-defined]
    assert created["share"]["password_protected"] is True
    token, share_id = created["token"], created["share"]["id"]
    with app_of(client)[DATABASE].activated():
        stored = await ShareLink.get(id=share_id)
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")

    page = await client.get(f"/api/v1/s/{token}")
    assert await _code(page) == (401, "share_password_required")
    assert "name" not in (await page.json())["error"]["details"]
    wrong = await client.get(f"/api/v1/s/{token}/download", headers={"X-Share-Password": "guess"})
    assert await _code(wrong) == (401, "share_password_wrong")
    right = await client.get(
        f"/api/v1/s/{token}/download", headers={"X-Share-Password": "open sesame 42"}
    )
    assert (right.status, await right.read()) == (200, b"secret")
    form = await client.post(f"/api/v1/s/{token}/download", data={"password": "open sesame 42"})
    assert (form.status, await form.read()) == (200, b"secret")
    viewed = await client.get(f"/api/v1/s/{token}", headers={"X-Share-Password": "open sesame 42"})
    assert (await viewed.json())["name"] == version.original_name

    for n in range(9):  # ten wrong in all, from several addresses: the link locks
        attempt = await client.get(
            f"/api/v1/s/{token}/download",
            headers={"X-Share-Password": f"guess {n}", **from_address(n + 1)},
        )
        assert await _code(attempt) == (401, "share_password_wrong")
    locked = await client.get(
        f"/api/v1/s/{token}/download", headers={"X-Share-Password": "open sesame 42"}
    )
    assert await _code(locked) == (429, "too_many_attempts")
    assert "Retry-After" in locked.headers
    outcomes = await _outcomes(client, share_id)
    assert outcomes == [
        "password_required",
        "wrong_password",
        "ok",
        "ok",
        "viewed",
        *["wrong_password"] * 9,
        "rate_limited",
    ]


async def test_concurrent_downloads_at_the_limit_count_exactly(
    client: Client, settings: Settings
) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    version = await add_version(client, owner_id=owner.user_id, data=b"limited" * 1000)
    created = await _share(client, owner, version.file_id, max_downloads=3)  # type: ignore[attr-defined]
    url = f"/api/v1/s/{created['token']}/download"
    etag = f'"{version.blob_key}"'

    not_modified = await client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status == 304  # transfers nothing: not counted
    out_of_range = await client.get(url, headers={"Range": "bytes=999999-"})
    assert out_of_range.status == 416  # not counted either

    async def fetch() -> int:
        response = await client.get(url)
        await response.read()
        return response.status

    statuses = await asyncio.gather(*(fetch() for _ in range(10)))
    assert sorted(statuses) == [200, 200, 200, *[410] * 7]
    with app_of(client)[DATABASE].activated():
        link = await ShareLink.get(id=created["share"]["id"])
    assert link.download_count == 3
    outcomes = await _outcomes(client, created["share"]["id"])
    assert outcomes[:2] == ["not_modified", "range_not_satisfiable"]
    assert sorted(outcomes[2:]) == sorted(["ok"] * 3 + ["limit_reached"] * 7)
    page = await client.get(f"/api/v1/s/{created['token']}")
    assert (await page.json())["downloads_left"] == 0


async def test_unscanned_deleted_and_foreign_links(client: Client, settings: Settings) -> None:
    keys = app_of(client)[KEYS]
    owner = await sign_in(settings.database_url, keys)
    stranger = await sign_in(settings.database_url, keys)
    version = await add_version(
        client, owner_id=owner.user_id, data=b"x", scan_status=ScanStatus.PENDING
    )
    file_id = version.file_id  # type: ignore[attr-defined]
    created = await _share(client, owner, file_id)
    token, share_id = created["token"], created["share"]["id"]

    page = await (await client.get(f"/api/v1/s/{token}")).json()
    assert (page["downloadable"], page["scan_status"]) == (False, "pending")
    pending = await client.get(f"/api/v1/s/{token}/download")
    assert await _code(pending) == (409, "file_not_scanned")
    await set_version_fields(client, version.id, scan_status=ScanStatus.INFECTED)
    infected = await client.get(f"/api/v1/s/{token}/download")
    assert await _code(infected) == (423, "file_quarantined")

    foreign = await client.get(
        f"/api/v1/files/{file_id}/shares/{share_id}/accesses", headers=stranger.headers
    )
    assert await _code(foreign) == (404, "file_not_found")
    stranger_file = await add_version(client, owner_id=stranger.user_id, data=b"mine")
    crossed = await client.delete(
        f"/api/v1/files/{stranger_file.file_id}/shares/{share_id}",  # type: ignore[attr-defined]
        headers=stranger.headers,
    )
    assert await _code(crossed) == (404, "share_not_found")

    await client.delete(f"/api/v1/files/{file_id}", headers=owner.headers)
    deleted = await client.get(f"/api/v1/s/{token}/download")
    assert await _code(deleted) == (404, "share_not_found")
    assert await _outcomes(client, share_id) == [
        "viewed",
        "file_not_scanned",
        "file_quarantined",
        "file_deleted",
    ]
    with app_of(client)[DATABASE].activated():
        link = await ShareLink.get(id=share_id)
    assert (link.revoked_at, link.download_count) == (None, 0)
