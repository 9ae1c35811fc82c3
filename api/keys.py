"""Typed keys for what the application and each request hold (aiohttp's AppKey/RequestKey)."""

from __future__ import annotations

import socketio
from aiohttp import web
from redis.asyncio import Redis

from api.client_ip import Network
from api.commerce.service import Commerce
from api.identity.security_log import Client
from api.identity.services import IdentityServices
from api.metrics import Metrics
from core.bus import EventBus
from core.mail import Mailer
from core.principal import Principal
from core.rate_limit import RateLimiter
from core.settings import Settings
from core.tokens import KeyRing
from db.connection import Database
from hub.email.queue import EmailQueue
from hub.push import WebPushSender
from hub.server import Hub
from render_farm.service import RenderFarm
from storage.blobs import BlobStore
from storage.scan import Scanner
from storage.scanning import ScanWorker
from storage.tus import TusService

SETTINGS = web.AppKey("settings", Settings)
KEYS = web.AppKey("keys", KeyRing)
METRICS = web.AppKey("metrics", Metrics)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])
DATABASE = web.AppKey("database", Database)
REDIS = web.AppKey("redis", Redis)
BUS = web.AppKey("bus", EventBus)
MAILER = web.AppKey("mailer", Mailer)
LIMITER = web.AppKey("limiter", RateLimiter)
IDENTITY = web.AppKey("identity", IdentityServices)
SOCKETS = web.AppKey("sockets", socketio.AsyncServer)
HUB = web.AppKey("hub", Hub)
BLOBS = web.AppKey("blobs", BlobStore)
SCANNER = web.AppKey("scanner", Scanner)
SCAN_WORKER = web.AppKey("scan_worker", ScanWorker)
UPLOADS = web.AppKey("uploads", TusService)
PUSH = web.AppKey("push", WebPushSender)
COMMERCE = web.AppKey("commerce", Commerce)
EMAIL = web.AppKey("email", EmailQueue)
RENDER_FARM = web.AppKey("render_farm", RenderFarm)

REQUEST_ID = web.RequestKey("request_id", str)  # set by the request-id middleware
CLIENT = web.RequestKey("client", Client)  # set by the auth middleware
PRINCIPAL = web.RequestKey("principal", Principal)  # set when the caller is known
