"""tus 1.0.0 at `/api/v1/uploads/`: thin adapters over `storage.tus.TusService`.

Core protocol plus creation, creation-with-upload, creation-defer-length, expiration, checksum
(sha1, sha256), termination and concatenation. Every response under the prefix carries
`Tus-Resumable: 1.0.0`; every request but OPTIONS (and the JSON status GET) must send it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from uuid import UUID

import aiohttp
from aiohttp import hdrs, web
from pydantic import BaseModel

from api.auth import authenticated, principal_of, public
from api.keys import BLOBS, BUS, SETTINGS, UPLOADS
from api.middleware import error_response
from api.openapi import operation
from api.requests import json_response, path_uuid
from core.errors import AppError, BadRequest, UnsupportedMediaType
from core.logs import get_logger
from db.models.files import UploadKind, UploadState
from storage.tus import TusService, run_expiry_loop
from storage.tus_protocol import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    InvalidTusHeader,
    check_tus_resumable,
    encode_metadata,
    parse_checksum,
    parse_concat,
    parse_length,
    parse_metadata,
)
from storage.tus_types import UploadLimits, UploadView
from storage.upload_finish import DocumentFinisher

log = get_logger(__name__)

PREFIX = "/api/v1/uploads"
TAGS = ("uploads",)
# The request's reader may buffer up to twice this before TCP pushes back on the client
# (aiohttp's default is 64 KiB: the socket is paused and resumed every few pieces).
READ_BUFFER = 1024 * 1024
EXPIRY_SWEEP_SECONDS = 60.0


class UploadStatus(BaseModel):
    id: UUID
    kind: UploadKind
    state: UploadState
    offset: int
    length: int | None
    error_code: str
    expires_at: datetime | None
    file_id: UUID | None
    version_id: UUID | None
    version: int | None


def _service(request: web.Request) -> TusService:
    return request.app[UPLOADS]


def _location(upload_id: UUID) -> str:
    return f"{PREFIX}/{upload_id}"


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _upload_headers(view: UploadView) -> dict[str, str]:
    headers = {"Upload-Offset": str(view.offset)}
    if view.expires_at is not None:
        headers["Upload-Expires"] = _http_date(view.expires_at)
    if view.file is not None:
        headers["X-File-Id"] = str(view.file.file_id)
        headers["X-File-Version"] = str(view.file.version)
    return headers


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The body in the pieces the HTTP parser fed in. With a Content-Length they are never cut
    up nor joined (`readchunk`); a chunked body comes as it is buffered (`readany`, since
    `readchunk` would join the pieces of every HTTP chunk). Not `iter_chunks`: an empty body
    is aiohttp's one shared `EmptyStreamReader`, whose `readchunk` ends an iteration only the
    first time in the process (then it yields empty chunks forever)."""
    content = request.content
    content.set_read_chunk_size(READ_BUFFER)
    if request.content_length is not None:
        while chunk := (await content.readchunk())[0]:
            yield chunk
    else:
        while chunk := await content.readany():
            yield chunk


def _check_offset_body(request: web.Request) -> None:
    if request.content_type != OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(
            "unsupported_media_type", f"Send the body as {OFFSET_CONTENT_TYPE}"
        )


@public()
@operation(
    summary="tus discovery: versions, extensions, maximum size, checksum algorithms",
    tags=TAGS,
    responses={204: None},
)
async def tus_options(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Max-Size": str(request.app[SETTINGS].upload_max_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@authenticated()
@operation(
    summary="tus creation: start an upload (Upload-Length or Upload-Defer-Length: 1)",
    description="Upload-Metadata (base64 values): filename, filetype, and folder_id (target "
    "folder) or file_id (a new version of that file). A body of type "
    "application/offset+octet-stream is written at once (creation-with-upload). "
    "`Upload-Concat: partial` or `final;<urls>` (concatenation). Refused with 413 "
    "`upload_too_large` or 507 `upload_budget_exceeded`.",
    tags=TAGS,
    responses={201: None},
    auth=True,
)
async def tus_create(request: web.Request) -> web.StreamResponse:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    headers = request.headers
    concat = parse_concat(headers.get("Upload-Concat"))
    length = parse_length(headers.get("Upload-Length"), "Upload-Length")
    deferred = headers.get("Upload-Defer-Length")
    if deferred is not None and deferred != "1":
        raise InvalidTusHeader(message="Upload-Defer-Length must be 1")
    final = concat is not None and not concat.partial
    if final and (length is not None or deferred is not None):
        raise InvalidTusHeader(message="A final upload takes no Upload-Length")
    if not final and (length is None) == (deferred is None):
        raise InvalidTusHeader(message="Send Upload-Length or Upload-Defer-Length: 1")
    service = _service(request)
    view = await service.create(
        principal=principal_of(request),
        length=length,
        metadata=parse_metadata(headers.get("Upload-Metadata")),
        concat=concat,
    )
    location = _location(view.id)
    has_body = request.body_exists and request.content_length != 0  # None: chunked
    if has_body and not final:
        _check_offset_body(request)
        try:
            view = await service.write(
                owner_id=principal_of(request).user_id,
                upload_id=view.id,
                offset=0,
                body=_body(request),
                content_length=request.content_length,
                checksum=parse_checksum(headers.get("Upload-Checksum")),
            )
        except AppError as exc:
            owner_id = principal_of(request).user_id
            current = await service.status(owner_id=owner_id, upload_id=view.id)
            return error_response(
                exc,
                headers={**exc.headers, "Location": location, "Upload-Offset": str(current.offset)},
            )
        except (ConnectionError, aiohttp.ClientPayloadError):
            return _client_gone(view.id)
    return web.Response(status=201, headers={"Location": location, **_upload_headers(view)})


@authenticated()
@operation(
    summary="tus: the upload's offset (and length, metadata, expiry)",
    tags=TAGS,
    responses={200: None},
    auth=True,
)
async def tus_head(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    upload_id = path_uuid(request, "upload_id", not_found="upload_not_found")
    view = await _service(request).describe(
        owner_id=principal_of(request).user_id, upload_id=upload_id
    )
    headers = {**_upload_headers(view), hdrs.CACHE_CONTROL: "no-store"}
    if view.length is not None:
        headers["Upload-Length"] = str(view.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    if view.metadata:
        headers["Upload-Metadata"] = encode_metadata(view.metadata)
    if view.kind is UploadKind.PARTIAL:
        headers["Upload-Concat"] = "partial"
    elif view.kind is UploadKind.FINAL:
        headers["Upload-Concat"] = "final;" + " ".join(_location(p) for p in view.parts)
    return web.Response(status=200, headers=headers)


@authenticated()
@operation(
    summary="tus: append bytes at Upload-Offset",
    description="409 `offset_mismatch`, 415 without application/offset+octet-stream, "
    "460 `checksum_mismatch` (nothing added), 413 `upload_too_large`, 423 `upload_locked`. "
    "The PATCH that brings the last byte answers with X-File-Id and X-File-Version.",
    tags=TAGS,
    responses={204: None},
    auth=True,
)
async def tus_patch(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    upload_id = path_uuid(request, "upload_id", not_found="upload_not_found")
    _check_offset_body(request)
    offset = parse_length(request.headers.get("Upload-Offset"), "Upload-Offset")
    if offset is None:
        raise BadRequest("invalid_tus_header", "Upload-Offset is required")
    try:
        view = await _service(request).write(
            owner_id=principal_of(request).user_id,
            upload_id=upload_id,
            offset=offset,
            body=_body(request),
            content_length=request.content_length,
            length=parse_length(request.headers.get("Upload-Length"), "Upload-Length"),
            checksum=parse_checksum(request.headers.get("Upload-Checksum")),
        )
    except (ConnectionError, aiohttp.ClientPayloadError):
        return _client_gone(upload_id)
    return web.Response(status=204, headers=_upload_headers(view))


def _client_gone(upload_id: UUID) -> web.Response:
    """The client dropped the connection mid-body: what arrived is kept; nobody reads this."""
    log.info("tus.client_gone", upload_id=str(upload_id))
    return web.Response(status=400)


@authenticated()
@operation(
    summary="tus termination: drop an upload and its bytes",
    tags=TAGS,
    responses={204: None},
    auth=True,
)
async def tus_terminate(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    upload_id = path_uuid(request, "upload_id", not_found="upload_not_found")
    await _service(request).terminate(owner_id=principal_of(request).user_id, upload_id=upload_id)
    return web.Response(status=204)


@authenticated()
@operation(
    summary="An upload's state as JSON (for a client that lost the last PATCH's answer)",
    tags=TAGS,
    responses={200: UploadStatus},
    auth=True,
)
async def upload_status(request: web.Request) -> web.Response:
    upload_id = path_uuid(request, "upload_id", not_found="upload_not_found")
    view = await _service(request).status(
        owner_id=principal_of(request).user_id, upload_id=upload_id
    )
    return json_response(
        UploadStatus(
            id=view.id,
            kind=view.kind,
            state=view.state,
            offset=view.offset,
            length=view.length,
            error_code=view.error_code,
            expires_at=view.expires_at,
            file_id=view.file.file_id if view.file else None,
            version_id=view.file.version_id if view.file else None,
            version=view.file.version if view.file else None,
        )
    )


async def tus_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: Tus-Resumable on every response under the prefix (errors too)."""
    if request.path.startswith(PREFIX):
        response.headers["Tus-Resumable"] = TUS_VERSION


async def uploads_ctx(app: web.Application) -> AsyncIterator[None]:
    """The upload service and its expiry sweep (after the database, the bus and the store)."""
    settings = app[SETTINGS]
    store = app[BLOBS]
    service = TusService(
        store=store,
        finisher=DocumentFinisher(
            store=store, bus=app[BUS], scanning=settings.clamd_url is not None
        ),
        limits=UploadLimits(
            max_bytes=settings.upload_max_bytes,
            temp_budget_bytes=settings.upload_temp_budget_bytes,
            expiry_seconds=settings.upload_expiry_seconds,
        ),
        database_url=settings.database_url,
        spill_dir=settings.data_dir / "tus-spill",
    )
    app[UPLOADS] = service
    sweep = asyncio.create_task(run_expiry_loop(service, interval=EXPIRY_SWEEP_SECONDS))
    try:
        yield
    finally:
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep
        await service.close()


def add_routes(app: web.Application) -> None:
    r = app.router
    collection = PREFIX + "/"
    r.add_route(hdrs.METH_OPTIONS, collection, tus_options)
    r.add_post(collection, tus_create)
    item = PREFIX + "/{upload_id}"
    r.add_head(item, tus_head)
    r.add_patch(item, tus_patch)
    r.add_delete(item, tus_terminate)
    r.add_get(item, upload_status, allow_head=False)
    app.on_response_prepare.append(tus_headers)
