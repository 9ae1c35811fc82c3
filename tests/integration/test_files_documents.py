"""Files and folders over REST on SQLite and PostgreSQL: the folder tree, listing and paging,
tags, search (both dialects, odd input), soft delete, grants, and authorization: strangers
probing by id get 404 and change nothing."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import DATABASE, KEYS
from core.permissions import Role
from core.settings import Settings
from db.models.files import File, FileGrant, Folder, ShareLink
from tests.documents import add_version, app_of
from tests.identity import sign_in

Client = TestClient[Any, Any]


async def _json(response: Any) -> Any:
    return await response.json()


async def test_folder_tree_create_rename_move_delete(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    h = owner.headers

    async def make(name: str, parent: str | None = None) -> str:
        response = await client.post(
            "/api/v1/folders", json={"name": name, "parent_id": parent}, headers=h
        )
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])

    projects = await make("Projects")
    pump = await make("Pump", projects)
    impeller = await make("Impeller", pump)
    archive = await make("Archive")

    taken = await client.post("/api/v1/folders", json={"name": "Projects"}, headers=h)
    assert (taken.status, (await taken.json())["error"]["code"]) == (409, "folder_name_taken")
    taken_below = await client.post(
        "/api/v1/folders", json={"name": "Pump", "parent_id": projects}, headers=h
    )
    assert taken_below.status == 409

    roots = await _json(await client.get("/api/v1/folders", headers=h))
    assert [f["name"] for f in roots["items"]] == ["Archive", "Projects"]
    children = await _json(await client.get(f"/api/v1/folders?parent_id={projects}", headers=h))
    assert [f["name"] for f in children["items"]] == ["Pump"]

    cycle = await client.patch(
        f"/api/v1/folders/{projects}", json={"parent_id": impeller}, headers=h
    )
    assert (cycle.status, (await cycle.json())["error"]["code"]) == (409, "folder_cycle")
    into_itself = await client.patch(f"/api/v1/folders/{pump}", json={"parent_id": pump}, headers=h)
    assert (await into_itself.json())["error"]["code"] == "folder_cycle"

    moved = await client.patch(
        f"/api/v1/folders/{pump}", json={"parent_id": archive, "name": "Pump 2019"}, headers=h
    )
    assert moved.status == 200
    assert ((await moved.json())["parent_id"], (await moved.json())["name"]) == (
        archive,
        "Pump 2019",
    )
    to_root = await client.patch(f"/api/v1/folders/{pump}", json={"parent_id": None}, headers=h)
    assert (await to_root.json())["parent_id"] is None

    version = await add_version(
        client,
        owner_id=owner.user_id,
        data=b"blade",
        name="blade.txt",
        folder_id=impeller,  # type: ignore[arg-type]
    )
    not_empty = await client.delete(f"/api/v1/folders/{pump}", headers=h)
    assert (not_empty.status, (await not_empty.json())["error"]) == (
        409,
        {
            "code": "folder_not_empty",
            "message": "The folder has sub-folders or files: delete them first, or pass "
            "recursive=true",
            "details": {"folders": 1, "files": 1},
        },
    )
    gone = await client.delete(f"/api/v1/folders/{pump}?recursive=true", headers=h)
    assert await gone.json() == {"folders": 2, "files": 1}
    with app_of(client)[DATABASE].activated():
        file = await File.get(id=version.file_id)  # type: ignore[attr-defined]
        assert (file.deleted_at is not None, file.folder_id) == (True, None)  # type: ignore[attr-defined]
        assert await Folder.filter(id__in=[pump, impeller]).count() == 0
    empty = await client.delete(f"/api/v1/folders/{archive}", headers=h)
    assert empty.status == 200


async def test_listing_paging_tags_rename_move_and_soft_delete(
    client: Client, settings: Settings
) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    h = owner.headers
    folder = await _json(await client.post("/api/v1/folders", json={"name": "CAD"}, headers=h))
    names = ["delta.txt", "alpha.txt", "charlie.txt", "bravo.txt", "echo.txt"]
    ids = {}
    for name in names:
        version = await add_version(
            client, owner_id=owner.user_id, data=name.encode(), name=name, folder_id=folder["id"]
        )
        ids[name] = str(version.file_id)  # type: ignore[attr-defined]
    await add_version(client, owner_id=owner.user_id, data=b"root", name="root.txt")

    url = f"/api/v1/files?folder_id={folder['id']}&limit=2"
    pages, offset = [], 0
    while offset is not None:
        page = await _json(await client.get(f"{url}&offset={offset}", headers=h))
        pages.append([f["name"] for f in page["items"]])
        offset = page["next_offset"]
    assert pages == [["alpha.txt", "bravo.txt"], ["charlie.txt", "delta.txt"], ["echo.txt"]]
    newest = await _json(
        await client.get(
            f"/api/v1/files?folder_id={folder['id']}&order=-created_at&limit=1", headers=h
        )
    )
    assert [f["name"] for f in newest["items"]] == ["echo.txt"]
    root = await _json(await client.get("/api/v1/files?folder_id=root", headers=h))
    assert [f["name"] for f in root["items"]] == ["root.txt"]

    alpha = ids["alpha.txt"]
    tagged = await client.put(
        f"/api/v1/files/{alpha}/tags", json={"tags": ["Steel", " CNC  milled ", "steel"]}, headers=h
    )
    assert (await tagged.json())["tags"] == ["steel", "cnc milled"]
    changed = await client.patch(
        f"/api/v1/files/{alpha}/tags", json={"add": ["Rev-B"], "remove": ["STEEL"]}, headers=h
    )
    assert (await changed.json())["tags"] == ["cnc milled", "rev-b"]
    bad = await client.put(f"/api/v1/files/{alpha}/tags", json={"tags": ["<script>"]}, headers=h)
    assert (bad.status, (await bad.json())["error"]["code"]) == (422, "invalid_tag")
    by_tag = await _json(await client.get("/api/v1/files?tag=REV-B", headers=h))
    assert [f["name"] for f in by_tag["items"]] == ["alpha.txt"]

    renamed = await client.patch(
        f"/api/v1/files/{alpha}", json={"name": "Impeller blade.txt", "folder_id": None}, headers=h
    )
    assert renamed.status == 200
    assert ((await renamed.json())["name"], (await renamed.json())["folder_id"]) == (
        "Impeller blade.txt",
        None,
    )
    bad_name = await client.patch(f"/api/v1/files/{alpha}", json={"name": "a/b"}, headers=h)
    assert (await bad_name.json())["error"]["code"] == "invalid_name"

    deleted = await client.delete(f"/api/v1/files/{alpha}", headers=h)
    assert deleted.status == 204
    assert (await client.get(f"/api/v1/files/{alpha}", headers=h)).status == 404
    assert (await client.delete(f"/api/v1/files/{alpha}", headers=h)).status == 404
    listed = await _json(await client.get("/api/v1/files?limit=50", headers=h))
    assert alpha not in [f["id"] for f in listed["items"]]
    assert len(listed["items"]) == 5


async def test_search_over_names_tags_and_facts(client: Client, settings: Settings) -> None:
    owner = await sign_in(settings.database_url, app_of(client)[KEYS])
    stranger = await sign_in(settings.database_url, app_of(client)[KEYS])
    h = owner.headers
    bracket = await add_version(
        client,
        owner_id=owner.user_id,
        data=b"a",
        name="Bracket_v2.step",
        kind="step",
        facts={"product": "Housing Assembly"},
    )
    await add_version(client, owner_id=owner.user_id, data=b"b", name="bolt-m8.stl", kind="stl")
    await add_version(client, owner_id=stranger.user_id, data=b"c", name="bracket-other.step")
    bracket_id = str(bracket.file_id)  # type: ignore[attr-defined]
    await client.put(f"/api/v1/files/{bracket_id}/tags", json={"tags": ["Titanium"]}, headers=h)

    async def search(q: str, headers: dict[str, str] = h) -> list[str]:
        response = await client.get("/api/v1/files", params={"q": q}, headers=headers)
        assert response.status == 200, await response.text()
        return [f["name"] for f in (await response.json())["items"]]

    assert await search("bracket") == ["Bracket_v2.step"]  # not the stranger's
    assert await search("BRACK") == ["Bracket_v2.step"]  # prefixes
    assert await search("titan") == ["Bracket_v2.step"]  # tags
    assert await search("housing assem") == ["Bracket_v2.step"]  # facts, all words
    assert await search("m8 bolt") == ["bolt-m8.stl"]
    assert await search("bracket bolt") == []
    assert await search("bracket", stranger.headers) == ["bracket-other.step"]
    for odd in ['"', "'", "*", "NEAR(", "a OR", "-x", "(", ")", "^", ":", "&|!", "%_", "\\", "é"]:
        assert await search(odd) == [], odd
    assert await search('bracket" OR "bolt') == []  # quotes cannot open FTS syntax

    renamed = await client.patch(
        f"/api/v1/files/{bracket_id}", json={"name": "Flange.step"}, headers=h
    )
    assert renamed.status == 200
    assert await search("bracket") == []
    assert await search("flange titanium") == ["Flange.step"]
    await client.delete(f"/api/v1/files/{bracket_id}", headers=h)
    assert await search("flange") == []


async def test_strangers_get_404_and_change_nothing(client: Client, settings: Settings) -> None:
    keys = app_of(client)[KEYS]
    owner = await sign_in(settings.database_url, keys)
    stranger = await sign_in(settings.database_url, keys)
    folder = await _json(
        await client.post("/api/v1/folders", json={"name": "Secret"}, headers=owner.headers)
    )
    version = await add_version(
        client, owner_id=owner.user_id, data=b"a\n", name="secret.txt", folder_id=folder["id"]
    )
    file_id = str(version.file_id)  # type: ignore[attr-defined]
    await add_version(client, owner_id=owner.user_id, data=b"b\n", file_id=version.file_id)  # type: ignore[attr-defined]
    share = await _json(
        await client.post(f"/api/v1/files/{file_id}/shares", json={}, headers=owner.headers)
    )
    share_id = share["share"]["id"]
    f, s = f"/api/v1/files/{file_id}", stranger.headers
    probes: list[tuple[str, str, dict[str, Any] | None, str]] = [
        ("GET", f, None, "file_not_found"),
        ("PATCH", f, {"name": "mine.txt"}, "file_not_found"),
        ("DELETE", f, None, "file_not_found"),
        ("PUT", f"{f}/tags", {"tags": ["x"]}, "file_not_found"),
        ("GET", f"{f}/versions", None, "file_not_found"),
        ("GET", f"{f}/versions/1", None, "file_not_found"),
        ("GET", f"{f}/versions/1/download", None, "file_not_found"),
        ("GET", f"{f}/download", None, "file_not_found"),
        ("POST", f"{f}/versions/1/restore", None, "file_not_found"),
        ("GET", f"{f}/diff?from=1&to=2", None, "file_not_found"),
        ("GET", f"{f}/shares", None, "file_not_found"),
        ("POST", f"{f}/shares", {}, "file_not_found"),
        ("DELETE", f"{f}/shares/{share_id}", None, "file_not_found"),
        ("GET", f"{f}/shares/{share_id}/accesses", None, "file_not_found"),
        ("GET", f"{f}/grants", None, "file_not_found"),
        ("POST", f"{f}/grants", {"user_id": str(stranger.user_id)}, "file_not_found"),
        ("DELETE", f"{f}/grants/{stranger.user_id}", None, "file_not_found"),
        ("GET", f"/api/v1/folders/{folder['id']}", None, "folder_not_found"),
        ("PATCH", f"/api/v1/folders/{folder['id']}", {"name": "x"}, "folder_not_found"),
        ("DELETE", f"/api/v1/folders/{folder['id']}?recursive=true", None, "folder_not_found"),
        ("GET", f"/api/v1/files?folder_id={folder['id']}", None, "folder_not_found"),
        ("GET", f"/api/v1/folders?owner_id={owner.user_id}", None, "owner_not_found"),
        (
            "POST",
            "/api/v1/folders",
            {"name": "planted", "parent_id": folder["id"]},
            "folder_not_found",
        ),
        ("GET", "/api/v1/files/not-a-uuid", None, "file_not_found"),
    ]
    for method, url, body, code in probes:
        response = await client.request(method, url, json=body, headers=s)
        assert (response.status, (await response.json())["error"]["code"]) == (404, code), url
    listed = await _json(await client.get(f"/api/v1/files?owner_id={owner.user_id}", headers=s))
    assert listed["items"] == []

    with app_of(client)[DATABASE].activated():
        file = await File.get(id=file_id)
        assert (file.name, file.tags, file.deleted_at, file.current_version) == (
            "secret.txt",
            [],
            None,
            2,
        )
        assert await FileGrant.filter(file_id=file_id).count() == 0
        link = await ShareLink.get(id=share_id)
        assert link.revoked_at is None
        assert await ShareLink.filter(file_id=file_id).count() == 1
        assert await Folder.filter(id=folder["id"], name="Secret").count() == 1
        assert await Folder.filter(name="planted").count() == 0

    # Staff: editors read anything but write nothing; admins write too.
    editor = await sign_in(settings.database_url, keys, role=Role.EDITOR)
    admin = await sign_in(settings.database_url, keys, role=Role.ADMIN)
    seen = await _json(await client.get(f, headers=editor.headers))
    assert (seen["name"], seen["access"]) == ("secret.txt", "staff")
    assert (await client.get(f"{f}/versions/1/download", headers=editor.headers)).status == 200
    refused = await client.patch(f, json={"name": "x.txt"}, headers=editor.headers)
    assert refused.status == 404
    done = await client.patch(f, json={"name": "renamed by admin.txt"}, headers=admin.headers)
    assert done.status == 200


async def test_grants_give_read_access_only(client: Client, settings: Settings) -> None:
    keys = app_of(client)[KEYS]
    owner = await sign_in(settings.database_url, keys)
    colleague = await sign_in(settings.database_url, keys)
    version = await add_version(client, owner_id=owner.user_id, data=b"shared", name="s.txt")
    f = f"/api/v1/files/{version.file_id}"  # type: ignore[attr-defined]
    assert (await client.get(f, headers=colleague.headers)).status == 404

    granted = await client.post(
        f"{f}/grants", json={"email": colleague.email.upper()}, headers=owner.headers
    )
    assert granted.status == 201
    assert (await granted.json())["user_id"] == str(colleague.user_id)
    twice = await client.post(
        f"{f}/grants", json={"user_id": str(colleague.user_id)}, headers=owner.headers
    )
    assert twice.status == 201
    grants = await _json(await client.get(f"{f}/grants", headers=owner.headers))
    assert [g["email"] for g in grants["items"]] == [colleague.email]
    told = await _json(await client.get("/api/v1/notifications", headers=colleague.headers))
    assert [(n["type"], n["link"]) for n in told["items"]] == [
        ("file.shared", f"/files/{version.file_id}")  # type: ignore[attr-defined]
    ]  # once, though granted twice
    assert told["items"][0]["title"].endswith("shared s.txt with you")
    unknown = await client.post(
        f"{f}/grants", json={"email": "nobody@example.com"}, headers=owner.headers
    )
    assert (await unknown.json())["error"]["code"] == "user_not_found"

    seen = await _json(await client.get(f, headers=colleague.headers))
    assert seen["access"] == "grant"
    download = await client.get(f"{f}/download", headers=colleague.headers)
    assert await download.read() == b"shared"
    shared = await _json(await client.get("/api/v1/files?scope=shared", headers=colleague.headers))
    assert [x["name"] for x in shared["items"]] == ["s.txt"]
    owned = await _json(await client.get("/api/v1/files?scope=owned", headers=colleague.headers))
    assert owned["items"] == []
    for method, url, body in [
        ("PATCH", f, {"name": "taken.txt"}),
        ("DELETE", f, None),
        ("POST", f"{f}/shares", {}),
        ("POST", f"{f}/grants", {"email": "x@example.com"}),
        ("PUT", f"{f}/tags", {"tags": ["x"]}),
    ]:
        response = await client.request(method, url, json=body, headers=colleague.headers)
        assert response.status == 404, url

    revoked = await client.delete(f"{f}/grants/{colleague.user_id}", headers=owner.headers)
    assert revoked.status == 204
    assert (await client.get(f, headers=colleague.headers)).status == 404
    again = await client.delete(f"{f}/grants/{colleague.user_id}", headers=owner.headers)
    assert (await again.json())["error"]["code"] == "grant_not_found"
