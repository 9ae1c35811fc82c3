"""How the app serves the built pages: cache headers, the client-side routes' fallback, and
that no API route is shadowed. A small fake build stands in for web/dist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.web.routes import WEB_DIST
from core.settings import Settings

Client = TestClient[Any, Any]
pytestmark = pytest.mark.databases("sqlite")  # static files: the database plays no part
ASSET = "assets/portal-AbC123.js"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "dashboard").mkdir()
    (root / "index.html").write_text("<!doctype html><title>portal</title>")
    (root / "dashboard" / "index.html").write_text("<!doctype html><title>dashboard</title>")
    (root / ASSET).write_text("console.log('portal')")
    (root / "sw.js").write_text("self.addEventListener('push', () => {})")
    (tmp_path / "secret.txt").write_text("outside the build")
    return root


async def _client(aiohttp_client: Any, settings: Settings, dist: Path) -> Client:
    app = create_app(settings)
    app[WEB_DIST] = dist
    client: Client = await aiohttp_client(app)
    return client


async def test_hashed_assets_are_immutable_and_pages_revalidate(
    aiohttp_client: Any, settings: Settings, dist: Path
) -> None:
    client = await _client(aiohttp_client, settings, dist)

    asset = await client.get(f"/{ASSET}")
    assert asset.status == 200
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert asset.content_type in {"text/javascript", "application/javascript"}
    assert await asset.text() == "console.log('portal')"

    for path in ("/", "/sw.js"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Cache-Control"] == "no-cache", path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_client_routes_fall_back_to_their_page(
    aiohttp_client: Any, settings: Settings, dist: Path
) -> None:
    client = await _client(aiohttp_client, settings, dist)
    expected = {
        "/": "portal",
        "/sign-in": "portal",
        "/chat/0190f0e4-0000-7000-8000-000000000000": "portal",
        "/verify-email?token=abc": "portal",
        "/dashboard": "dashboard",
        "/dashboard/": "dashboard",
        "/dashboard/conversations/1": "dashboard",
        "/reset-password?token=abc": "portal",
        "/notifications": "portal",
    }
    for path, page in expected.items():
        response = await client.get(path)
        assert response.status == 200, path
        assert f"<title>{page}</title>" in await response.text(), path
        assert response.headers["Cache-Control"] == "no-cache", path

    unchanged = await client.get(
        "/", headers={"If-Modified-Since": response.headers["Last-Modified"]}
    )
    assert unchanged.status == 304


async def test_missing_files_and_escapes_are_404(
    aiohttp_client: Any, settings: Settings, dist: Path
) -> None:
    client = await _client(aiohttp_client, settings, dist)
    for path in (
        "/assets/gone-123.js",
        "/favicon.ico",
        "/index.html",  # pages only at their own paths
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/no-such-page",  # unmatched, as before the pages were served
        "/chat/1/2",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found", path


async def test_api_routes_are_not_shadowed(
    aiohttp_client: Any, settings: Settings, dist: Path
) -> None:
    client = await _client(aiohttp_client, settings, dist)

    unknown = await client.get("/api/v1/no-such-thing")
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "not_found"
    wrong_method = await client.get("/api/v1/auth/login")
    assert wrong_method.status == 405
    providers = await client.get("/api/v1/auth/oauth/providers")
    assert providers.status == 200
    assert (await providers.json()) == {"items": []}
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api")).status == 404


async def test_without_a_build_the_api_still_serves(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    client = await _client(aiohttp_client, settings, tmp_path / "not-built")

    page = await client.get("/")
    assert page.status == 404
    assert (await page.json())["error"]["code"] == "web_not_built"
    assert (await client.get("/healthz")).status == 200
