"""Who may call what: every route declares its access, and each role gets exactly what the
permission table grants; administration, API keys and the security log end to end."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.auth import PUBLIC_PREFIXES, Access
from api.keys import KEYS
from core.permissions import AUTHENTICATED, PUBLIC, Permission, Role, has_permission
from core.settings import Settings
from db.connection import open_database
from db.models.identity import ApiKey, SecurityEvent, User
from tests.conftest import SettingsFactory, from_address
from tests.identity import SignedIn, sign_in

Client = TestClient[Any, Any]
ROLES = list(Role)


def _routes(app: web.Application) -> list[tuple[str, str, Access | None]]:
    found = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = resource.canonical
        if (path.rstrip("/") + "/").startswith(PUBLIC_PREFIXES):
            continue
        found.append((route.method, path, getattr(route.handler, "__access__", None)))
    return found


async def test_every_route_declares_its_access(settings: Settings) -> None:
    app = create_app(settings)
    undeclared = [f"{m} {p}" for m, p, access in _routes(app) if access is None]
    assert undeclared == []
    for _, _, access in _routes(app):
        assert access is not None
        assert access.permission in {PUBLIC, AUTHENTICATED} | {p.value for p in Permission}


async def test_undeclared_route_is_refused(aiohttp_client: Any, settings: Settings) -> None:
    app = create_app(settings)

    async def forgotten(request: web.Request) -> web.Response:
        return web.Response(text="should never be seen")

    app.router.add_get("/api/v1/forgotten", forgotten)
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/forgotten")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "route_undeclared"


def _concrete(path: str) -> str:
    return "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/"))


async def test_route_by_role_matrix(client: Client, settings: Settings) -> None:
    """Each role against each protected route: exactly the granted ones get past the check."""
    assert client.app is not None
    keys = client.app[KEYS]
    accounts = {role: await sign_in(settings.database_url, keys, role=role) for role in ROLES}
    checked = 0
    for method, path, access in _routes(client.app):
        assert access is not None
        url = _concrete(path)
        anonymous = await client.request(method, url, json={}, headers=from_address(200))
        code = (await anonymous.json())["error"]["code"] if anonymous.status >= 400 else None
        if access.permission == PUBLIC:
            assert code not in ("unauthorized", "forbidden"), f"{method} {path}"
            continue
        assert anonymous.status == 401, f"anonymous {method} {path}"
        for n, role in enumerate(ROLES):
            response = await client.request(
                method, url, json={}, headers={**accounts[role].headers, **from_address(n)}
            )
            body = await response.json() if response.content_type == "application/json" else {}
            denied = response.status == 403 and body["error"]["code"] == "forbidden"
            allowed = has_permission(role, access.permission)
            assert denied is not allowed, f"{role} {method} {path}: {response.status} {body}"
            checked += 1
    assert checked >= 4 * 8


async def test_customers_cannot_reach_each_others_objects(
    client: Client, settings: Settings
) -> None:
    assert client.app is not None
    keys = client.app[KEYS]
    alice = await sign_in(settings.database_url, keys)
    bob = await sign_in(settings.database_url, keys)
    me = await (await client.get("/api/v1/me", headers=bob.headers)).json()
    assert me["id"] == str(bob.user_id)
    assert me["email"] != alice.email
    # Admin listings are not a customer's to read, whatever the query.
    probe = await client.get(f"/api/v1/admin/users?q={alice.email}", headers=bob.headers)
    assert probe.status == 403


async def _admin_pair(settings: Settings, client: Client) -> tuple[SignedIn, SignedIn]:
    assert client.app is not None
    keys = client.app[KEYS]
    return (
        await sign_in(settings.database_url, keys, role=Role.ADMIN),
        await sign_in(settings.database_url, keys, role=Role.SUPER_ADMIN),
    )


async def test_admins_list_and_search_users(client: Client, settings: Settings) -> None:
    admin, _ = await _admin_pair(settings, client)
    assert client.app is not None
    for n in range(3):
        await sign_in(settings.database_url, client.app[KEYS], email=f"findme{n}@example.com")
    found = await (
        await client.get("/api/v1/admin/users?q=findme&limit=2", headers=admin.headers)
    ).json()
    assert [u["email"] for u in found["items"]] == ["findme0@example.com", "findme1@example.com"]
    rest = await (
        await client.get(
            f"/api/v1/admin/users?q=findme&limit=2&after={found['next_cursor']}",
            headers=admin.headers,
        )
    ).json()
    assert [u["email"] for u in rest["items"]] == ["findme2@example.com"]
    assert rest["next_cursor"] is None
    staff = await (await client.get("/api/v1/admin/users?role=admin", headers=admin.headers)).json()
    assert {u["role"] for u in staff["items"]} == {"admin"}
    bad = await client.get("/api/v1/admin/users?limit=5000", headers=admin.headers)
    assert (await bad.json())["error"]["code"] == "validation_failed"


async def test_only_a_super_admin_grants_admin(client: Client, settings: Settings) -> None:
    admin, root = await _admin_pair(settings, client)
    assert client.app is not None
    target = await sign_in(settings.database_url, client.app[KEYS])
    url = f"/api/v1/admin/users/{target.user_id}/role"

    to_editor = await client.put(url, json={"role": "editor"}, headers=admin.headers)
    assert (await to_editor.json())["role"] == "editor"
    to_admin = await client.put(url, json={"role": "admin"}, headers=admin.headers)
    assert (to_admin.status, (await to_admin.json())["error"]["code"]) == (403, "forbidden")
    by_root = await client.put(url, json={"role": "admin"}, headers=root.headers)
    assert (await by_root.json())["role"] == "admin"
    demote_peer = await client.put(url, json={"role": "customer"}, headers=admin.headers)
    assert demote_peer.status == 403
    self_change = await client.put(
        f"/api/v1/admin/users/{admin.user_id}/role",
        json={"role": "super_admin"},
        headers=admin.headers,
    )
    assert (await self_change.json())["error"]["code"] == "cannot_change_self"
    unknown = await client.put(
        f"/api/v1/admin/users/{uuid.uuid4()}/role", json={"role": "editor"}, headers=root.headers
    )
    assert unknown.status == 404
    async with open_database(settings.database_url):
        user = await User.get(id=target.user_id)
        assert user.role is Role.ADMIN
        changes = await SecurityEvent.filter(kind="role_changed").order_by("id")
        assert [c.data["to"] for c in changes] == ["editor", "admin"]


async def test_a_role_change_applies_to_live_tokens(client: Client, settings: Settings) -> None:
    _, root = await _admin_pair(settings, client)
    assert client.app is not None
    editor = await sign_in(settings.database_url, client.app[KEYS], role=Role.EDITOR)
    assert (await client.get("/api/v1/me", headers=editor.headers)).status == 200
    await client.put(
        f"/api/v1/admin/users/{editor.user_id}/role",
        json={"role": "customer"},
        headers=root.headers,
    )
    me = await (await client.get("/api/v1/me", headers=editor.headers)).json()
    assert me["role"] == "customer"


async def test_suspension_ends_sessions_and_blocks_sign_in(
    client: Client, settings: Settings
) -> None:
    admin, _ = await _admin_pair(settings, client)
    assert client.app is not None
    target = await sign_in(settings.database_url, client.app[KEYS])
    url = f"/api/v1/admin/users/{target.user_id}/suspended"
    response = await client.put(url, json={"suspended": True}, headers=admin.headers)
    assert (await response.json())["is_active"] is False
    me = await client.get("/api/v1/me", headers=target.headers)
    assert (me.status, (await me.json())["error"]["code"]) == (401, "session_revoked")
    back = await client.put(url, json={"suspended": False}, headers=admin.headers)
    assert (await back.json())["is_active"] is True
    assert (await client.get("/api/v1/me", headers=target.headers)).status == 401  # still ended
    peer = await sign_in(settings.database_url, client.app[KEYS], role=Role.ADMIN)
    refused = await client.put(
        f"/api/v1/admin/users/{peer.user_id}/suspended",
        json={"suspended": True},
        headers=admin.headers,
    )
    assert refused.status == 403


async def test_security_events_are_filtered_and_paged(client: Client, settings: Settings) -> None:
    admin, _ = await _admin_pair(settings, client)
    for n in range(3):
        await client.post(
            "/api/v1/auth/login",
            json={"email": f"ghost{n}@example.com", "password": "x" * 12},
            headers=from_address(50 + n),
        )
    page = await (
        await client.get(
            "/api/v1/admin/security-events?kind=login_failed&limit=2", headers=admin.headers
        )
    ).json()
    assert [e["email"] for e in page["items"]] == ["ghost2@example.com", "ghost1@example.com"]
    assert page["items"][0]["ip"] == "192.0.2.52"
    older = await (
        await client.get(
            f"/api/v1/admin/security-events?kind=login_failed&before={page['next_cursor']}",
            headers=admin.headers,
        )
    ).json()
    assert [e["email"] for e in older["items"]] == ["ghost0@example.com"]
    by_ip = await (
        await client.get("/api/v1/admin/security-events?ip=192.0.2.51", headers=admin.headers)
    ).json()
    assert [e["email"] for e in by_ip["items"]] == ["ghost1@example.com"]


async def test_api_keys_lifecycle(client: Client, settings: Settings) -> None:
    admin, _ = await _admin_pair(settings, client)
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "CRM sync", "scopes": ["users:read"]},
        headers=admin.headers,
    )
    assert created.status == 201
    body = await created.json()
    key = body["key"]
    assert key.startswith(f"iek_{body['prefix']}_")

    listed = await (await client.get("/api/v1/api-keys", headers=admin.headers)).json()
    assert [k["name"] for k in listed["items"]] == ["CRM sync"]
    assert "key" not in listed["items"][0]

    with_key = {"X-API-Key": key, **from_address(60)}
    users = await client.get("/api/v1/admin/users", headers=with_key)
    assert users.status == 200
    outside_scope = await client.get("/api/v1/admin/security-events", headers=with_key)
    assert outside_scope.status == 403
    moved = await client.get("/api/v1/admin/users", headers={"X-API-Key": key, **from_address(61)})
    assert moved.status == 200

    rotated = await client.post(
        f"/api/v1/api-keys/{body['id']}/rotate", json={"grace_seconds": 0}, headers=admin.headers
    )
    successor = await rotated.json()
    assert successor["key"] != key
    await asyncio.sleep(0.01)
    old = await client.get("/api/v1/admin/users", headers=with_key)
    assert (old.status, (await old.json())["error"]["code"]) == (401, "invalid_api_key")
    new_headers = {"X-API-Key": successor["key"], **from_address(60)}
    assert (await client.get("/api/v1/admin/users", headers=new_headers)).status == 200

    revoked = await client.delete(f"/api/v1/api-keys/{successor['id']}", headers=admin.headers)
    assert revoked.status == 204
    assert (await client.get("/api/v1/admin/users", headers=new_headers)).status == 401

    async with open_database(settings.database_url):
        stored = await ApiKey.all()
        assert all(key not in (row.key_hash, row.prefix) for row in stored)
        kinds = [e.kind for e in await SecurityEvent.all().order_by("id")]
    assert kinds.count("api_key_new_ip") == 1
    assert {"api_key_created", "api_key_rotated", "api_key_revoked"} <= set(kinds)


async def test_api_key_scopes_cannot_exceed_the_owner(client: Client, settings: Settings) -> None:
    admin, _ = await _admin_pair(settings, client)
    response = await client.post(
        "/api/v1/api-keys",
        json={"name": "too much", "scopes": ["users:grant_admin"]},
        headers=admin.headers,
    )
    assert (response.status, (await response.json())["error"]["code"]) == (
        422,
        "scope_not_allowed",
    )
    unknown = await client.post(
        "/api/v1/api-keys",
        json={"name": "x", "scopes": ["root:everything"]},
        headers=admin.headers,
    )
    assert (await unknown.json())["error"]["code"] == "validation_failed"
    async with open_database(settings.database_url):
        assert await ApiKey.all().count() == 0


async def test_one_admin_cannot_touch_another_admins_key(
    client: Client, settings: Settings
) -> None:
    admin, root = await _admin_pair(settings, client)
    created = await (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "mine", "scopes": ["users:read"]},
            headers=admin.headers,
        )
    ).json()
    for method, url in (
        ("DELETE", f"/api/v1/api-keys/{created['id']}"),
        ("POST", f"/api/v1/api-keys/{created['id']}/rotate"),
    ):
        response = await client.request(method, url, json={}, headers=root.headers)
        assert response.status == 404
    assert (await (await client.get("/api/v1/api-keys", headers=root.headers)).json())[
        "items"
    ] == []


@pytest.fixture
async def two_nodes(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> tuple[Client, Client]:
    settings = make_settings(
        database_url=migrated_database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        trusted_proxies="127.0.0.1",
        secret_key="two-nodes-share-one-key-two-nodes-share",
    )
    return await aiohttp_client(create_app(settings)), await aiohttp_client(create_app(settings))


async def test_rate_limit_holds_across_two_app_instances(two_nodes: tuple[Client, Client]) -> None:
    node_a, node_b = two_nodes
    body = {"email": "not-an-address", "password": "x"}
    headers = from_address(77)
    answers = []
    for node in (node_a, node_b, node_a, node_b):
        response = await node.post("/api/v1/auth/register", json=body, headers=headers)
        answers.append(response.status)
    assert answers == [422, 422, 422, 429]
    last = await node_b.post("/api/v1/auth/register", json=body, headers=headers)
    assert (await last.json())["error"]["code"] == "rate_limited"
    assert 0 < int(last.headers["Retry-After"]) <= 60
    other = await node_a.post("/api/v1/auth/register", json=body, headers=from_address(78))
    assert other.status == 422  # another address has its own budget


async def test_authenticated_budget_is_per_user_and_reported(
    client: Client, settings: Settings
) -> None:
    assert client.app is not None
    account = await sign_in(settings.database_url, client.app[KEYS])
    response = await client.get("/api/v1/me", headers=account.headers)
    assert response.headers["RateLimit-Limit"] == "600"
    assert response.headers["RateLimit-Remaining"] == "599"
    staff = await sign_in(settings.database_url, client.app[KEYS], role=Role.EDITOR)
    staff_response = await client.get("/api/v1/me", headers=staff.headers)
    assert staff_response.headers["RateLimit-Limit"] == "1200"
