"""The Socket.IO server: built here, mounted by the app at `/socket.io/`.

Several hub processes share rooms through `AsyncRedisManager` (Redis pub/sub) when `REDIS_URL`
is set; a single embedded process uses the in-process manager. The handshake takes the same
access token as the REST API (`auth: {token}`); a refusal's data carries `code`.
"""

from __future__ import annotations

from typing import Any

import socketio

from core.errors import AppError
from core.logs import get_logger
from core.secret_key import SigningKey
from core.settings import Settings
from core.tokens import decode_access_token
from db.models.identity import Role

log = get_logger(__name__)

STAFF_ROLES = frozenset({Role.EDITOR, Role.ADMIN, Role.SUPER_ADMIN})


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def create_client_manager(settings: Settings) -> socketio.AsyncManager:
    if settings.redis_url is None:
        return socketio.AsyncManager()
    return socketio.AsyncRedisManager(
        settings.redis_url, channel=f"{settings.redis_prefix}socketio"
    )


def create_socket_server(settings: Settings, *, signing_key: SigningKey) -> socketio.AsyncServer:
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
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": "unauthorized", "message": "An access token is required"}
            )
        try:
            claims = decode_access_token(token, key=signing_key.value)
        except AppError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": exc.code, "message": exc.message}
            ) from None
        await sio.save_session(
            sid, {"user_id": claims.user_id, "role": claims.role, "sid": claims.session_id}
        )
        await sio.enter_room(sid, user_room(claims.user_id))
        if claims.role in STAFF_ROLES:
            await sio.enter_room(sid, "staff")
        log.debug("hub.connected", user_id=claims.user_id, sid=sid)

    sio.on("connect", connect)
    return sio
