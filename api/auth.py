"""Who may call what, and how often: the one place routes are authorised and rate-limited.

Every route declares its access with `@requires(permission)` or `@public()`; an undeclared
route is refused (and a test fails). The middleware resolves the caller from
`Authorization: Bearer <access JWT>` or `X-API-Key`, checks the declared permission, then
spends from the caller's budget for the route's rate class, shared across hub processes
when Redis is configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import hdrs, web

from api.client_ip import client_ip
from api.identity.security_log import Client
from api.keys import CLIENT, IDENTITY, KEYS, LIMITER, PRINCIPAL, TRUSTED_PROXIES
from core.errors import Forbidden, RateLimited, Unauthorized
from core.permissions import AUTHENTICATED, PUBLIC
from core.principal import Principal
from core.rate_limit import Decision, Limit
from db.principals import principal_from_access_token

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RateClass(StrEnum):
    NONE = "none"  # operations probes
    LOGIN = "login"
    REGISTER = "register"
    SENSITIVE = "sensitive"  # reset and verification mails, token exchanges
    API = "api"


MINUTE = 60.0
# Per client address for the sensitive classes; per caller for the API.
ADDRESS_LIMITS = {
    RateClass.LOGIN: Limit(count=5, window=MINUTE),
    RateClass.REGISTER: Limit(count=3, window=MINUTE),
    RateClass.SENSITIVE: Limit(count=5, window=MINUTE),
}
ANONYMOUS_API = Limit(count=120, window=MINUTE)
CUSTOMER_API = Limit(count=600, window=MINUTE)
STAFF_API = Limit(count=1200, window=MINUTE)
API_KEY_API = Limit(count=600, window=MINUTE)

# Resources that are not our handlers: Socket.IO authenticates at its handshake, static
# files are public. Everything else must declare its access.
PUBLIC_PREFIXES = ("/socket.io/", "/api/docs/static/")


@dataclass(frozen=True, slots=True)
class Access:
    permission: str
    rate: RateClass


def requires(permission: str, *, rate: RateClass = RateClass.API) -> Callable[[F], F]:
    def declare(handler: F) -> F:
        handler.__access__ = Access(permission=str(permission), rate=rate)  # type: ignore[attr-defined]
        return handler

    return declare


def public(*, rate: RateClass = RateClass.API) -> Callable[[F], F]:
    return requires(PUBLIC, rate=rate)


def authenticated(*, rate: RateClass = RateClass.API) -> Callable[[F], F]:
    return requires(AUTHENTICATED, rate=rate)


def access_of(request: web.Request) -> Access | None:
    route = request.match_info.route
    declared: Access | None = getattr(route.handler, "__access__", None)
    if declared is not None:
        return declared
    if request.path.startswith(PUBLIC_PREFIXES):
        return Access(permission=PUBLIC, rate=RateClass.NONE)
    return None


def principal_of(request: web.Request) -> Principal:
    """The caller of a route that requires one (the middleware has made sure it exists)."""
    try:
        return request[PRINCIPAL]
    except KeyError:
        raise Unauthorized("unauthorized", "Sign in first") from None


def client_of(request: web.Request) -> Client:
    return request[CLIENT]


async def _authenticate(request: web.Request, client: Client) -> Principal | None:
    api_key = request.headers.get("X-API-Key")
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    if api_key:
        return await request.app[IDENTITY].api_keys.authenticate(key=api_key, client=client)
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("unauthorized", "Use Authorization: Bearer <access token>")
    return await principal_from_access_token(token.strip(), keys=request.app[KEYS])


def _budget(access: Access, principal: Principal | None, client: Client) -> tuple[str, Limit]:
    if access.rate in ADDRESS_LIMITS:
        return f"{access.rate}:ip:{client.ip}", ADDRESS_LIMITS[access.rate]
    if principal is None:
        return f"api:ip:{client.ip}", ANONYMOUS_API
    if principal.api_key_id is not None:
        return f"api:key:{principal.api_key_id}", API_KEY_API
    limit = STAFF_API if principal.is_staff else CUSTOMER_API
    return f"api:user:{principal.user_id}", limit


def _rate_headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit.count),
        "RateLimit-Remaining": str(decision.remaining),
    }


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404 and 405: nothing to authorise
    access = access_of(request)
    if access is None:
        raise Forbidden("route_undeclared", "This route declares no access rule")
    client = Client(
        ip=client_ip(request, request.app[TRUSTED_PROXIES]),
        user_agent=request.headers.get(hdrs.USER_AGENT, "")[:300],
    )
    request[CLIENT] = client
    principal = None if access.rate is RateClass.NONE else await _authenticate(request, client)
    if access.permission != PUBLIC:
        if principal is None:
            raise Unauthorized("unauthorized", "Sign in first")
        if not principal.can(access.permission):
            raise Forbidden("forbidden", "You may not do this")
    if principal is not None:
        request[PRINCIPAL] = principal
    if access.rate is RateClass.NONE:
        return await handler(request)
    key, limit = _budget(access, principal, client)
    decision = await request.app[LIMITER].hit(key, limit)
    if not decision.allowed:
        raise RateLimited(
            "rate_limited",
            "Too many requests: slow down",
            details={"retry_after": round(decision.retry_after, 3)},
        )
    response = await handler(request)
    if not response.prepared:
        response.headers.update(_rate_headers(decision))
    return response
