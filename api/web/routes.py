"""Serve the pages Vite builds into `web/dist/`: the portal at `/`, the dashboard at `/dashboard`.

Hashed files under `/assets/` never change, so browsers keep them for a year (`immutable`);
everything else (the HTML, `sw.js`, the icon) is revalidated on every use (`no-cache`), so a
new build reaches every browser at once. The pages route on the client: each of their paths
(`PORTAL_PAGES`, `/dashboard/...`) answers with its page's `index.html`. Only those paths and
the build's files are served; any other path stays unmatched (404) as before, so no API route
is shadowed. Register these routes last all the same.

When the pages are not built (no Node.js on the machine), the API is served without them and
the pages' paths answer 404 `web_not_built`, saying how to build them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from api.auth import RateClass, public
from core.errors import NotFound

DIST_DIR = Path(__file__).resolve().parents[2] / "web" / "dist"
WEB_DIST = web.AppKey("web_dist", Path)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# The portal's client-side routes (web/src/portal/main.ts); links in mails and notifications
# point at them (/verify-email?token=..., /reset-password?token=..., /chat/<id>), and so does
# the OAuth callback's redirect (/sign-in?error=...).
PORTAL_PAGES = (
    "/",
    "/sign-in",
    "/register",
    "/verify-email",
    "/reset-password",
    "/chat",
    "/chat/{conversation_id}",
    "/notifications",
    "/files",
    "/files/{file_id}",
    "/shop",
    "/orders",
    "/orders/{order_id}",
)
DASHBOARD_PAGES = ("/dashboard", "/dashboard/{rest:.*}")


def _inside(dist: Path, relative: str) -> Path | None:
    """The build's file at `relative`, if it is one and lies inside the build."""
    root = dist.resolve()
    candidate = (root / relative).resolve()
    if candidate.is_relative_to(root) and candidate.is_file():
        return candidate
    return None


async def _page(dist: Path, name: str) -> web.FileResponse:
    page = await asyncio.to_thread(_inside, dist, name)
    if page is None:
        raise NotFound(
            "web_not_built",
            "The web pages are not built: install Node.js and npm, then run `make web` "
            "(`make run` does it when npm is there). The API works without them.",
        )
    return web.FileResponse(page, headers={"Cache-Control": REVALIDATE})


@public(rate=RateClass.NONE)
async def portal_page(request: web.Request) -> web.FileResponse:
    return await _page(request.app[WEB_DIST], "index.html")


@public(rate=RateClass.NONE)
async def dashboard_page(request: web.Request) -> web.FileResponse:
    return await _page(request.app[WEB_DIST], "dashboard/index.html")


@public(rate=RateClass.NONE)
async def asset(request: web.Request) -> web.FileResponse:
    """A hashed build file: its name changes whenever its content does."""
    found = await asyncio.to_thread(
        _inside, request.app[WEB_DIST], f"assets/{request.match_info['name']}"
    )
    if found is None:
        raise NotFound("not_found", "No such file")
    return web.FileResponse(found, headers={"Cache-Control": IMMUTABLE})


@public(rate=RateClass.NONE)
async def root_file(request: web.Request) -> web.FileResponse:
    """A file at the build's top (sw.js, favicon.svg): same name across builds, revalidated."""
    found = await asyncio.to_thread(_inside, request.app[WEB_DIST], request.match_info["name"])
    if found is None or found.name == "index.html":
        raise NotFound("not_found", "No such file")
    return web.FileResponse(found, headers={"Cache-Control": REVALIDATE})


def add_routes(app: web.Application, *, dist: Path = DIST_DIR) -> None:
    app[WEB_DIST] = dist
    r = app.router
    for path in PORTAL_PAGES:
        r.add_get(path, portal_page)
    for path in DASHBOARD_PAGES:
        r.add_get(path, dashboard_page)
    r.add_get("/assets/{name:[^/]+}", asset)
    r.add_get(r"/{name:[^/]+\.[A-Za-z0-9]+}", root_file)
