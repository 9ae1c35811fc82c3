"""Identity routes: thin adapters from HTTP to the identity services."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, Field

from api.auth import RateClass, authenticated, client_of, principal_of, public, requires
from api.identity import schemas as s
from api.identity.cookies import (
    clear_oauth_flow_cookie,
    clear_session_cookies,
    oauth_flow_from_cookie,
    refresh_token_from_cookie,
    set_oauth_flow_cookie,
    set_session_cookies,
)
from api.identity.oidc import OAuthFailure
from api.identity.security_log import list_security_events
from api.identity.sessions import TokenPair
from api.keys import IDENTITY, SETTINGS
from api.middleware import error_response
from api.openapi import operation
from api.requests import json_response, path_uuid, read_json, read_query
from core.errors import Unauthorized
from core.permissions import Permission, Role
from db.models.identity import ApiKey, SecurityEvent, User

AUTH = ("auth",)
ADMIN = ("admin",)
KEYS_TAG = ("api keys",)


def user_body(user: User) -> s.UserBody:
    return s.UserBody(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        is_active=user.is_active,
        email_verified=user.email_verified_at is not None,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _token_response(request: web.Request, pair: TokenPair, *, use_cookie: bool) -> web.Response:
    body = s.TokenPairBody(access_token=pair.access_token, expires_in=pair.expires_in)
    if not use_cookie:
        return json_response(body.model_copy(update={"refresh_token": pair.refresh_token}))
    response = web.Response(content_type="application/json")
    body = body.model_copy(
        update={"csrf_token": set_session_cookies(request, response, pair.refresh_token)}
    )
    response.text = body.model_dump_json()
    return response


# -- accounts --------------------------------------------------------------------------------


@public(rate=RateClass.REGISTER)
@operation(
    summary="Create an account; a verification link is mailed",
    tags=AUTH,
    request=s.RegisterRequest,
    responses={201: s.UserBody},
)
async def register(request: web.Request) -> web.Response:
    body = await read_json(request, s.RegisterRequest)
    account = await request.app[IDENTITY].accounts.register(
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        client=client_of(request),
    )
    return json_response(user_body(await User.get(id=account.id)), status=201)


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Confirm an email address with the mailed token",
    tags=AUTH,
    request=s.TokenRequest,
    responses={200: s.UserBody},
)
async def verify_email(request: web.Request) -> web.Response:
    body = await read_json(request, s.TokenRequest)
    account = await request.app[IDENTITY].accounts.verify_email(
        token=body.token, client=client_of(request)
    )
    return json_response(user_body(await User.get(id=account.id)))


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Mail a new verification link (always accepted)",
    tags=AUTH,
    request=s.EmailRequest,
    responses={202: s.Accepted},
)
async def resend_verification(request: web.Request) -> web.Response:
    body = await read_json(request, s.EmailRequest)
    await request.app[IDENTITY].accounts.resend_verification(email=body.email)
    return json_response(s.Accepted(), status=202)


@public(rate=RateClass.LOGIN)
@operation(
    summary="Sign in with email and password",
    description="Same answer for an unknown address and a wrong password. With `use_cookie` "
    "the refresh token is set as an HttpOnly cookie and a CSRF token is returned.",
    tags=AUTH,
    request=s.LoginRequest,
    responses={200: s.TokenPairBody},
)
async def login(request: web.Request) -> web.Response:
    body = await read_json(request, s.LoginRequest)
    pair = await request.app[IDENTITY].accounts.login(
        email=body.email, password=body.password, client=client_of(request)
    )
    return _token_response(request, pair, use_cookie=body.use_cookie)


async def _refresh_token(request: web.Request) -> tuple[str, bool]:
    """From the body (API clients) or the cookie (web app, CSRF-checked)."""
    body = s.RefreshRequest()
    if request.can_read_body:
        body = await read_json(request, s.RefreshRequest)
    if body.refresh_token:
        return body.refresh_token, False
    cookie = refresh_token_from_cookie(request)
    if cookie is None:
        raise Unauthorized("invalid_refresh_token", "Sign in again")
    return cookie, True


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Exchange a refresh token for a new pair (rotation)",
    description="A spent refresh token presented again revokes its whole session.",
    tags=AUTH,
    request=s.RefreshRequest,
    responses={200: s.TokenPairBody},
)
async def refresh(request: web.Request) -> web.Response:
    token, from_cookie = await _refresh_token(request)
    pair = await request.app[IDENTITY].sessions.refresh(
        refresh_token=token, client=client_of(request)
    )
    return _token_response(request, pair, use_cookie=from_cookie)


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="End the session of a refresh token",
    tags=AUTH,
    request=s.RefreshRequest,
    responses={204: None},
)
async def logout(request: web.Request) -> web.Response:
    token, _ = await _refresh_token(request)
    await request.app[IDENTITY].sessions.revoke_by_refresh_token(
        refresh_token=token, client=client_of(request)
    )
    response = web.Response(status=204)
    clear_session_cookies(response)
    return response


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Mail a password reset link (always accepted)",
    tags=AUTH,
    request=s.EmailRequest,
    responses={202: s.Accepted},
)
async def password_reset_request(request: web.Request) -> web.Response:
    body = await read_json(request, s.EmailRequest)
    await request.app[IDENTITY].accounts.request_password_reset(
        email=body.email, client=client_of(request)
    )
    return json_response(s.Accepted(), status=202)


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Set a new password with the mailed token; every session ends",
    tags=AUTH,
    request=s.PasswordResetConfirm,
    responses={204: None},
)
async def password_reset_confirm(request: web.Request) -> web.Response:
    body = await read_json(request, s.PasswordResetConfirm)
    await request.app[IDENTITY].accounts.confirm_password_reset(
        token=body.token, password=body.password, client=client_of(request)
    )
    return web.Response(status=204)


@authenticated()
@operation(summary="The signed-in user", tags=AUTH, responses={200: s.UserBody}, auth=True)
async def me(request: web.Request) -> web.Response:
    user = await User.get(id=principal_of(request).user_id)
    return json_response(user_body(user))


# -- sign-in with OpenID providers -----------------------------------------------------------


class OAuthStartQuery(BaseModel):
    next: str = "/"  # checked by the service (422 invalid_next)


class OAuthCallbackQuery(BaseModel):
    code: str | None = None
    state: str | None = None
    error: str | None = None


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _back_to_sign_in(request: web.Request, error: OAuthFailure) -> web.Response:
    if not error.back_to_sign_in:
        return error_response(error)
    public_url = request.app[SETTINGS].public_url
    return _redirect(f"{public_url}/sign-in?error={error.code}")


@public()
@operation(
    summary="The sign-in providers that are enabled",
    tags=AUTH,
    responses={200: s.OAuthProviderList},
)
async def oauth_providers(request: web.Request) -> web.Response:
    items = [
        s.OAuthProviderBody(
            name=config.name,
            label=config.profile.label,
            start_url=f"/api/v1/auth/oauth/{config.name}/start",
        )
        for config in request.app[IDENTITY].oauth.enabled
    ]
    return json_response(s.OAuthProviderList(items=items))


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Start signing in with a provider: redirects the browser there",
    description="`next` is the path on this site to land on afterwards (default `/`). The "
    "flow's state travels in a short-lived HttpOnly cookie. If the provider cannot be reached "
    "the browser goes to `/sign-in?error=oauth_provider_error`.",
    tags=AUTH,
    responses={302: None},
)
async def oauth_start(request: web.Request) -> web.Response:
    query = read_query(request, OAuthStartQuery)
    try:
        started = await request.app[IDENTITY].oauth.start(
            provider=request.match_info["provider"],
            next_path=query.next,
            client=client_of(request),
        )
    except OAuthFailure as exc:
        if not exc.back_to_sign_in:
            raise
        return _back_to_sign_in(request, exc)
    response = _redirect(started.url)
    set_oauth_flow_cookie(request, response, started.flow, max_age=started.max_age)
    return response


@public(rate=RateClass.SENSITIVE)
@operation(
    summary="Where the provider sends the browser back: signs in and redirects to `next`",
    description="On success the session cookies are set (as after a cookie sign-in) and the "
    "browser goes to `next`; on failure to `/sign-in?error=<code>` (oauth_state_mismatch, "
    "oauth_token_invalid, oauth_email_unverified, oauth_account_suspended, "
    "oauth_provider_error).",
    tags=AUTH,
    responses={302: None},
)
async def oauth_callback(request: web.Request) -> web.Response:
    query = read_query(request, OAuthCallbackQuery)
    try:
        signed_in = await request.app[IDENTITY].oauth.finish(
            provider=request.match_info["provider"],
            code=query.code,
            state=query.state,
            flow_cookie=oauth_flow_from_cookie(request),
            client=client_of(request),
            provider_error=query.error,
        )
    except OAuthFailure as exc:
        response = _back_to_sign_in(request, exc)
    else:
        response = _redirect(request.app[SETTINGS].public_url + signed_in.next_path)
        set_session_cookies(request, response, signed_in.pair.refresh_token)
    clear_oauth_flow_cookie(response)
    return response


# -- administration --------------------------------------------------------------------------


class UserQuery(BaseModel):
    q: str | None = Field(default=None, max_length=320)
    role: Role | None = None
    active: bool | None = None
    after: UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)


@requires(Permission.USERS_READ)
@operation(summary="List and search users", tags=ADMIN, responses={200: s.UserList}, auth=True)
async def list_users(request: web.Request) -> web.Response:
    query = read_query(request, UserQuery)
    users, cursor = await request.app[IDENTITY].admin.list_users(
        query=query.q, role=query.role, active=query.active, after=query.after, limit=query.limit
    )
    return json_response(
        s.UserList(items=[user_body(u) for u in users], next_cursor=str(cursor) if cursor else None)
    )


def _user_id(request: web.Request) -> UUID:
    return path_uuid(request, "user_id", not_found="user_not_found")


@requires(Permission.USERS_MANAGE)
@operation(
    summary="Suspend or reactivate a user (suspending ends their sessions)",
    tags=ADMIN,
    request=s.SuspendRequest,
    responses={200: s.UserBody},
    auth=True,
)
async def set_suspended(request: web.Request) -> web.Response:
    body = await read_json(request, s.SuspendRequest)
    user = await request.app[IDENTITY].admin.set_suspended(
        actor=principal_of(request),
        user_id=_user_id(request),
        suspended=body.suspended,
        client=client_of(request),
    )
    return json_response(user_body(user))


@requires(Permission.USERS_MANAGE)
@operation(
    summary="Change a user's role (only a super admin grants or removes admin)",
    tags=ADMIN,
    request=s.RoleRequest,
    responses={200: s.UserBody},
    auth=True,
)
async def change_role(request: web.Request) -> web.Response:
    body = await read_json(request, s.RoleRequest)
    user = await request.app[IDENTITY].admin.change_role(
        actor=principal_of(request),
        user_id=_user_id(request),
        role=body.role,
        client=client_of(request),
    )
    return json_response(user_body(user))


class EventQuery(BaseModel):
    kind: str | None = Field(default=None, max_length=40)
    user_id: UUID | None = None
    ip: str | None = Field(default=None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    before: UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)


def event_body(row: SecurityEvent) -> s.SecurityEventBody:
    return s.SecurityEventBody(
        id=row.id,
        kind=row.kind,
        user_id=row.user_id,  # type: ignore[attr-defined]
        actor_id=row.actor_id,
        email=row.email,
        ip=row.ip,
        user_agent=row.user_agent,
        data=row.data,
        created_at=row.created_at,
    )


@requires(Permission.SECURITY_EVENTS_READ)
@operation(
    summary="The security log, newest first, with filters",
    tags=ADMIN,
    responses={200: s.SecurityEventList},
    auth=True,
)
async def security_events(request: web.Request) -> web.Response:
    query = read_query(request, EventQuery)
    rows, cursor = await list_security_events(
        kind=query.kind,
        user_id=query.user_id,
        ip=query.ip,
        since=query.since,
        until=query.until,
        before_id=query.before,
        limit=query.limit,
    )
    return json_response(
        s.SecurityEventList(
            items=[event_body(r) for r in rows], next_cursor=str(cursor) if cursor else None
        )
    )


# -- API keys --------------------------------------------------------------------------------


def key_body(row: ApiKey) -> s.ApiKeyBody:
    return s.ApiKeyBody(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=[Permission(scope) for scope in row.scopes],
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        last_used_ip=row.last_used_ip,
    )


def _key_id(request: web.Request) -> UUID:
    return path_uuid(request, "key_id", not_found="api_key_not_found")


@requires(Permission.API_KEYS_MANAGE)
@operation(summary="Your API keys", tags=KEYS_TAG, responses={200: s.ApiKeyList}, auth=True)
async def list_api_keys(request: web.Request) -> web.Response:
    rows = await request.app[IDENTITY].api_keys.list(owner=principal_of(request))
    return json_response(s.ApiKeyList(items=[key_body(r) for r in rows]))


@requires(Permission.API_KEYS_MANAGE)
@operation(
    summary="Create an API key (its secret is shown this once)",
    tags=KEYS_TAG,
    request=s.ApiKeyCreate,
    responses={201: s.ApiKeyCreated},
    auth=True,
)
async def create_api_key(request: web.Request) -> web.Response:
    body = await read_json(request, s.ApiKeyCreate)
    created = await request.app[IDENTITY].api_keys.create(
        owner=principal_of(request), name=body.name, scopes=body.scopes, client=client_of(request)
    )
    data = key_body(created.row).model_dump()
    return json_response(s.ApiKeyCreated(**data, key=created.key), status=201)


@requires(Permission.API_KEYS_MANAGE)
@operation(
    summary="Issue a successor key; the old one works for a grace period",
    tags=KEYS_TAG,
    request=s.RotateRequest,
    responses={201: s.ApiKeyCreated},
    auth=True,
)
async def rotate_api_key(request: web.Request) -> web.Response:
    body = await read_json(request, s.RotateRequest)
    created = await request.app[IDENTITY].api_keys.rotate(
        owner=principal_of(request),
        key_id=_key_id(request),
        grace=timedelta(seconds=body.grace_seconds),
        client=client_of(request),
    )
    data = key_body(created.row).model_dump()
    return json_response(s.ApiKeyCreated(**data, key=created.key), status=201)


@requires(Permission.API_KEYS_MANAGE)
@operation(summary="Revoke an API key at once", tags=KEYS_TAG, responses={204: None}, auth=True)
async def revoke_api_key(request: web.Request) -> web.Response:
    await request.app[IDENTITY].api_keys.revoke(
        owner=principal_of(request), key_id=_key_id(request), client=client_of(request)
    )
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/auth/register", register)
    r.add_post("/api/v1/auth/verify-email", verify_email)
    r.add_post("/api/v1/auth/verify-email/resend", resend_verification)
    r.add_post("/api/v1/auth/login", login)
    r.add_post("/api/v1/auth/refresh", refresh)
    r.add_post("/api/v1/auth/logout", logout)
    r.add_post("/api/v1/auth/password-reset/request", password_reset_request)
    r.add_post("/api/v1/auth/password-reset/confirm", password_reset_confirm)
    r.add_get("/api/v1/auth/oauth/providers", oauth_providers)
    r.add_get("/api/v1/auth/oauth/{provider}/start", oauth_start)
    r.add_get("/api/v1/auth/oauth/{provider}/callback", oauth_callback)
    r.add_get("/api/v1/me", me)
    r.add_get("/api/v1/admin/users", list_users)
    r.add_put("/api/v1/admin/users/{user_id}/suspended", set_suspended)
    r.add_put("/api/v1/admin/users/{user_id}/role", change_role)
    r.add_get("/api/v1/admin/security-events", security_events)
    r.add_get("/api/v1/api-keys", list_api_keys)
    r.add_post("/api/v1/api-keys", create_api_key)
    r.add_post("/api/v1/api-keys/{key_id}/rotate", rotate_api_key)
    r.add_delete("/api/v1/api-keys/{key_id}", revoke_api_key)
