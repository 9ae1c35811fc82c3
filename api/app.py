"""The composition root: `create_app(settings)` wires every part of the service together.

Long-lived resources open and close in `cleanup_ctx` generators, in order: signing key,
database, Redis, the event bus, the Socket.IO server. Nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from api import middleware
from api.auth import auth_middleware
from api.chat import routes as chat_routes
from api.client_ip import parse_networks
from api.commerce import routes as commerce_routes
from api.commerce.setup import commerce_ctx
from api.files import documents as file_routes
from api.files import renders as render_routes
from api.files import shares as share_routes
from api.files.scanning import scan_worker_ctx
from api.files.uploads import add_routes as add_upload_routes
from api.files.uploads import uploads_ctx
from api.identity import routes as identity_routes
from api.identity.oidc import provider_configs
from api.identity.services import build_identity
from api.keys import (
    BLOBS,
    BUS,
    DATABASE,
    EMAIL,
    HUB,
    IDENTITY,
    KEYS,
    LIMITER,
    MAILER,
    METRICS,
    PUSH,
    REDIS,
    SCANNER,
    SETTINGS,
    SOCKETS,
    TRUSTED_PROXIES,
)
from api.metrics import Metrics
from api.notifications import email_routes, preference_routes
from api.notifications import routes as notification_routes
from api.openapi import setup_openapi
from api.ops import routes as ops_routes
from api.web import routes as web_routes
from core.bus import create_bus
from core.logs import get_logger
from core.rate_limit import create_rate_limiter
from core.redis_client import open_redis
from core.secret_key import load_key_ring
from core.settings import Settings
from db.connection import Database
from hub.email.setup import create_email_queue
from hub.email.transport import create_signed_mailer
from hub.push import create_web_push
from hub.server import Hub
from storage.blobs import create_blob_store
from storage.scan import make_scanner

log = get_logger(__name__)

TITLE = "IdEinstein hub API"


def service_version() -> str:
    try:
        return version("ideinstein-hub")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    database = Database(app[SETTINGS].database_url)
    await database.open()
    database.make_current()
    app[DATABASE] = database
    try:
        yield
    finally:
        await database.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.redis_url is None:
        yield
        return
    redis = open_redis(settings.redis_url)
    app[REDIS] = redis
    try:
        yield
    finally:
        await redis.aclose()


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = create_bus(redis=app.get(REDIS), prefix=app[SETTINGS].redis_prefix)
    await bus.start()
    app[BUS] = bus
    try:
        yield
    finally:
        await bus.close()


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    mailer = create_signed_mailer(settings)  # core.mail's backends, DKIM-signed when set
    limiter = create_rate_limiter(redis=app.get(REDIS), prefix=settings.redis_prefix)
    app[MAILER] = mailer
    app[LIMITER] = limiter
    app[IDENTITY] = build_identity(
        keys=app[KEYS],
        bus=app[BUS],
        mailer=mailer,
        limiter=limiter,
        public_url=settings.public_url,
        oauth_providers=provider_configs(settings),
    )
    app[PUSH] = push = create_web_push(settings)
    push.start()
    try:
        yield
    finally:
        await push.close()
        await app[IDENTITY].oauth.aclose()
        await limiter.close()
        await mailer.close()


async def _email_ctx(app: web.Application) -> AsyncIterator[None]:
    """The mail queue's background task (rows in the database, polled by every process)."""
    queue = create_email_queue(
        app[SETTINGS], mailer=app[MAILER], limiter=app[LIMITER], keys=app[KEYS]
    )
    app[EMAIL] = queue
    queue.start()
    try:
        yield
    finally:
        await queue.close()


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = create_blob_store(settings)
    await store.start()
    app[BLOBS] = store
    app[SCANNER] = make_scanner(settings)
    try:
        yield
    finally:
        await store.close()


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    # The Socket.IO server is attached in create_app (routes freeze at start-up); its services
    # and background work start here, once the bus and Redis are up.
    hub = app[HUB]
    await hub.start(bus=app[BUS], redis=app.get(REDIS), push=app[PUSH], email=app[EMAIL])
    try:
        yield
    finally:
        await hub.stop()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            middleware.request_id_middleware,
            middleware.metrics_middleware,
            middleware.cors_middleware,
            middleware.error_middleware,
            middleware.database_middleware,
            auth_middleware,
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS] = settings
    app[KEYS] = keys = load_key_ring(settings)
    app[METRICS] = Metrics()
    app.on_response_prepare.append(middleware.add_response_headers)
    app[TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app.cleanup_ctx.extend(
        [_database_ctx, _redis_ctx, _bus_ctx, _storage_ctx, _services_ctx, _email_ctx, _hub_ctx]
    )
    app.cleanup_ctx.append(render_routes.render_farm_ctx)  # before the scan worker
    app.cleanup_ctx.append(scan_worker_ctx)  # after the store, the scanner and the bus
    app.cleanup_ctx.append(uploads_ctx)  # tus: after the database, the bus and the store
    app.cleanup_ctx.append(commerce_ctx)  # Stripe session, checkout expiry: after the bus

    hub = Hub(settings, keys=keys, registry=app[METRICS].registry)
    hub.attach(app)
    app[HUB] = hub
    app[SOCKETS] = hub.sio

    ops_routes.add_routes(app)
    identity_routes.add_routes(app)
    chat_routes.add_routes(app)
    notification_routes.add_routes(app)
    preference_routes.add_routes(app)
    email_routes.add_routes(app)
    add_upload_routes(app)
    file_routes.add_routes(app)
    render_routes.add_routes(app)
    commerce_routes.add_routes(app)
    share_routes.add_routes(app)
    setup_openapi(app, title=TITLE, version=service_version())
    # Keep LAST: the pages' routes come after every API route.
    web_routes.add_routes(app, dist=settings.web_dist_dir or web_routes.DIST_DIR)
    return app
