"""Typed keys for what the application holds (aiohttp's AppKey: no globals, no singletons)."""

from __future__ import annotations

import socketio
from aiohttp import web
from redis.asyncio import Redis

from api.metrics import Metrics
from core.bus import EventBus
from core.secret_key import SigningKey
from core.settings import Settings
from db.connection import Database

SETTINGS = web.AppKey("settings", Settings)
SIGNING_KEY = web.AppKey("signing_key", SigningKey)
METRICS = web.AppKey("metrics", Metrics)
DATABASE = web.AppKey("database", Database)
REDIS = web.AppKey("redis", Redis)
BUS = web.AppKey("bus", EventBus)
SOCKETS = web.AppKey("sockets", socketio.AsyncServer)

REQUEST_ID = web.RequestKey("request_id", str)  # set by the request-id middleware
