"""The Socket.IO server: built here, mounted by the app at `/socket.io/`.

Several hub processes share rooms through `AsyncRedisManager` (Redis pub/sub) when `REDIS_URL`
is set; a single embedded process uses the in-process manager. The handshake takes the same
access token as the REST API (`auth: {token}`); a refusal's data carries `code`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import socketio

from core.errors import AppError
from core.logs import get_logger
from core.permissions import STAFF_ROLES
from core.settings import Settings
from core.tokens import KeyRing
from db.principals import principal_from_access_token

log = get_logger(__name__)


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def refuse(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """A handshake refusal: the client's `connect_error` gets `{message, data: {code}}`."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code})


class RedisClientManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager, plus the close it lacks: `AsyncServer.shutdown()`
    stops Engine.IO but leaves the manager's listener task and Redis connections open."""

    async def close(self) -> None:
        listener: asyncio.Task[None] | None = getattr(self, "thread", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        pubsub = getattr(self, "pubsub", None)
        if pubsub is not None:
            await pubsub.aclose()
        redis = getattr(self, "redis", None)
        if redis is not None:
            await redis.aclose()


def create_client_manager(settings: Settings) -> socketio.AsyncManager:
    if settings.redis_url is None:
        return socketio.AsyncManager()
    return RedisClientManager(settings.redis_url, channel=f"{settings.redis_prefix}socketio")


async def shutdown_socket_server(sio: socketio.AsyncServer) -> None:
    await sio.shutdown()
    if isinstance(sio.manager, RedisClientManager):
        await sio.manager.close()


def create_socket_server(settings: Settings, *, keys: KeyRing) -> socketio.AsyncServer:
    allowed_origins = [settings.public_url, *settings.cors_allowed_origins]
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=create_client_manager(settings),
        cors_allowed_origins=allowed_origins,
        max_http_buffer_size=settings.max_request_bytes,
        logger=False,
        engineio_logger=False,
    )

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise refuse("unauthorized", "An access token is required")
        try:
            principal = await principal_from_access_token(token, keys=keys)
        except AppError as exc:
            raise refuse(exc.code, exc.message) from None
        await sio.save_session(sid, {"principal": principal})
        await sio.enter_room(sid, user_room(str(principal.user_id)))
        if principal.role in STAFF_ROLES:
            await sio.enter_room(sid, "staff")
        log.debug("hub.connected", user_id=str(principal.user_id), sid=sid)

    sio.on("connect", connect)
    return sio
