"""HTTP middleware: request ids, metrics, CORS, errors, and the headers every response carries.

Order, outermost first: request id -> metrics -> CORS -> errors -> database -> handler. The error
middleware turns everything into a response, so the outer ones always see a status.
Headers that must be on every response (request id, security headers) are added in
`on_response_prepare`, which also covers responses that bypass middlewares' return values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import asyncpg  # type: ignore[import-untyped]
import structlog
from aiohttp import hdrs, web
from tortoise.exceptions import DBConnectionError

from api.keys import DATABASE, METRICS, REQUEST_ID, SETTINGS
from core.errors import AppError, Forbidden, ServiceUnavailable
from core.ids import new_id_str
from core.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SOCKET_IO_PREFIX = "/socket.io/"

CORS_ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
CORS_ALLOWED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "x-request-id",
        "x-csrf-token",
        "idempotency-key",
        # tus 1.0.0
        "tus-resumable",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "upload-defer-length",
        "upload-concat",
        "upload-checksum",
        "x-http-method-override",
    }
)
CORS_EXPOSED_HEADERS = ", ".join(
    [
        "X-Request-ID",
        "Location",
        "Retry-After",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Tus-Checksum-Algorithm",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Expires",
        "Upload-Metadata",
        "Upload-Defer-Length",
        "Upload-Concat",
        "X-File-Id",
        "X-File-Version",
    ]
)
CORS_MAX_AGE = "600"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "style-src 'self' 'unsafe-inline'",
        "script-src 'self'",
        "connect-src 'self' ws: wss:",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)


def error_response(error: AppError, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error.to_dict()}, status=error.status, headers=headers)


def _code_for_status(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http_error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


# The database server is down, restarting, or cut the link: asyncpg's connection errors, or an
# OSError (connection refused or reset) raised inside the database driver.
_DATABASE_CONNECTION_ERRORS = (
    DBConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
)
_DATABASE_MODULES = ("asyncpg", "tortoise")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database cannot be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _DATABASE_CONNECTION_ERRORS):
            return True
        if isinstance(current, (ConnectionError, TimeoutError, OSError)) and _raised_in_driver(
            current
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_DATABASE_MODULES):
            return True
        tb = tb.tb_next
    return False


# nginx's status for a request whose client closed the connection before the answer: what the
# metrics count such requests as (the response itself is never sent).
CLIENT_CLOSED_REQUEST = 499


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection has closed (not, say, an upstream's we were calling)."""
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID_RE.match(incoming) else new_id_str()
    request[REQUEST_ID] = request_id
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    metrics.http_in_flight.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.http_in_flight.dec()
        metrics.http_duration.labels(request.method, route).observe(time.perf_counter() - started)
        metrics.http_requests.labels(request.method, route, str(status)).inc()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        if exc.status >= 500:
            log.error("http.app_error", code=exc.code, path=request.path)
        return error_response(exc, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = AppError(_code_for_status(exc.status), exc.reason, details={})
        response = web.json_response({"error": error.to_dict()}, status=exc.status)
        for name in (hdrs.ALLOW, hdrs.RETRY_AFTER):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and client_gone(request):
            # The client hung up mid-request (e.g. while its body was read): nobody is left to
            # answer and it is no fault of ours. No traceback: a load balancer or a benchmark
            # dropping many connections at once would otherwise stall the loop formatting them.
            log.info("http.client_gone", method=request.method, path=request.path)
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        if database_unavailable(exc):
            log.warning("http.database_unavailable", path=request.path, error=repr(exc)[:200])
            unavailable = ServiceUnavailable(
                "database_unavailable", "The database is unreachable: try again shortly"
            )
            return error_response(unavailable, headers={hdrs.RETRY_AFTER: "1"})
        request_id = request.get(REQUEST_ID, "")
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        return error_response(AppError(details={"request_id": request_id}))


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or request.path.startswith(SOCKET_IO_PREFIX):
        return await handler(request)  # same-origin or Socket.IO (which does its own CORS)
    settings = request.app[SETTINGS]
    allowed = origin == settings.public_url or origin in settings.cors_allowed_origins
    preflight = (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )
    if preflight:
        if not allowed:
            return _denied_preflight()
        requested = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
        headers = [h.strip() for h in requested.split(",") if h.strip()]
        refused = [h for h in headers if h.lower() not in CORS_ALLOWED_HEADERS]
        if refused:
            return _denied_preflight(f"Header not allowed: {', '.join(refused)}")
        return web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: CORS_ALLOWED_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(headers),
                hdrs.ACCESS_CONTROL_MAX_AGE: CORS_MAX_AGE,
                hdrs.VARY: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )
    response = await handler(request)
    if allowed:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = CORS_EXPOSED_HEADERS
    response.headers.add(hdrs.VARY, "Origin")
    return response


@web.middleware
async def database_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler with this app's database current (several apps may share a process)."""
    with request.app[DATABASE].activated():
        return await handler(request)


def _denied_preflight(message: str = "This origin may not call the API") -> web.Response:
    return error_response(Forbidden("cors_denied", message), headers={hdrs.VARY: "Origin"})


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the request id and the security headers, on every response."""
    headers = response.headers
    request_id = request.get(REQUEST_ID)
    if request_id:
        headers["X-Request-ID"] = request_id
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if request.app[SETTINGS].public_url.startswith("https://"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.path.startswith("/api/"):
        headers.setdefault(hdrs.CACHE_CONTROL, "no-store")
