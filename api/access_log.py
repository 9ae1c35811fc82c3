"""One structured line per HTTP request (aiohttp's access log, through structlog)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from api.keys import REQUEST_ID
from core.logs import get_logger

_log = get_logger("http.access")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        _log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=response.status,
            bytes=response.body_length,
            duration_ms=round(time * 1000, 2),
            remote=request.remote,
            request_id=request.get(REQUEST_ID),
        )

    @property
    def enabled(self) -> bool:
        return _log.isEnabledFor(20)  # INFO
