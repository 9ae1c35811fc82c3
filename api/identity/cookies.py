"""The web app's refresh token lives in an HttpOnly cookie; CSRF guards the routes that read it.

Two cookies: `ie_refresh` (HttpOnly, SameSite=Strict, only sent to /api/v1/auth/) and
`ie_csrf` (readable by the page's script). A cookie-authenticated request must come from an
allowed Origin and echo `ie_csrf` in `X-CSRF-Token` (double submit).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from aiohttp import hdrs, web

from api.keys import SETTINGS
from core.errors import Forbidden

REFRESH_COOKIE = "ie_refresh"
CSRF_COOKIE = "ie_csrf"
CSRF_HEADER = "X-CSRF-Token"
AUTH_PATH = "/api/v1/auth/"
COOKIE_LIFETIME = timedelta(days=30)


def _secure(request: web.Request) -> bool:
    return request.app[SETTINGS].public_url.startswith("https://")


def set_session_cookies(
    request: web.Request, response: web.StreamResponse, refresh_token: str
) -> str:
    """Set both cookies; returns the CSRF token (also sent in the body for the page)."""
    csrf = secrets.token_urlsafe(32)
    max_age = int(COOKIE_LIFETIME.total_seconds())
    secure = _secure(request)
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=max_age,
        path=AUTH_PATH,
        secure=secure,
        httponly=True,
        samesite="Strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="Strict",
    )
    return csrf


def clear_session_cookies(response: web.StreamResponse) -> None:
    response.del_cookie(REFRESH_COOKIE, path=AUTH_PATH)
    response.del_cookie(CSRF_COOKIE, path="/")


# The sign-in flow with an OpenID provider: state, nonce and PKCE verifier, signed (see
# api/identity/oauth.py). SameSite=Lax, not Strict: the provider sends the browser back to us
# from its own site, and that top-level GET must carry the cookie.
OAUTH_FLOW_COOKIE = "ie_oauth"
OAUTH_PATH = "/api/v1/auth/oauth/"


def set_oauth_flow_cookie(
    request: web.Request, response: web.StreamResponse, flow: str, *, max_age: int
) -> None:
    response.set_cookie(
        OAUTH_FLOW_COOKIE,
        flow,
        max_age=max_age,
        path=OAUTH_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="Lax",
    )


def clear_oauth_flow_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(OAUTH_FLOW_COOKIE, path=OAUTH_PATH)


def oauth_flow_from_cookie(request: web.Request) -> str | None:
    return request.cookies.get(OAUTH_FLOW_COOKIE) or None


def refresh_token_from_cookie(request: web.Request) -> str | None:
    """The cookie's refresh token after the CSRF checks, or None if there is no cookie."""
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        return None
    settings = request.app[SETTINGS]
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or (
        origin != settings.public_url and origin not in settings.cors_allowed_origins
    ):
        raise Forbidden("csrf_failed", "Cross-site request refused (Origin)")
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(expected, sent):
        raise Forbidden("csrf_failed", "Cross-site request refused (CSRF token)")
    return token
