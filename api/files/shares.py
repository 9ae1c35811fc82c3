"""Share links over REST: the writers' side under `/files/{id}/shares`, the public side at
`/s/{token}`.

Public side:
- `GET /api/v1/s/{token}`: the link's metadata (JSON). A password-protected link answers
  `share_password_required` (401) until the password is sent.
- `GET /api/v1/s/{token}/download`: the bytes (Range, ETag as for signed-in downloads; S3: a
  302 to the store). The password goes in the `X-Share-Password` header, or
- `POST /api/v1/s/{token}/download` with an `application/x-www-form-urlencoded` body
  `password=...` (an HTML form).
Wrong passwords are limited per link and per address (`too_many_attempts`, 429); every request
is rate-limited per address like any anonymous API call. Every use is logged
(`GET /files/{id}/shares/{share_id}/accesses`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticated, client_of, principal_of, public
from api.files.downloads import (
    DOWNLOAD_CONTENT_TYPES,
    DOWNLOAD_RESPONSES,
    BlobDownload,
    RangeNotSatisfiable,
    plan_download,
    send_download,
)
from api.keys import BLOBS, LIMITER, SETTINGS
from api.openapi import operation
from api.requests import json_response, path_uuid, read_json, read_query
from db.models.files import ShareAccess, ShareLink
from storage import shares
from storage.shares import ShareOutcome, Visitor

TAGS = ("shares",)
PASSWORD_HEADER = "X-Share-Password"  # noqa: S105 (a header name)
MAX_TOKEN = 128


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="A fixed version; default: current")
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=90 * 86400, description="Default 7 days, at most 90"
    )
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    max_downloads: int | None = Field(default=None, ge=1, le=1_000_000)


class ShareBody(BaseModel):
    id: UUID
    file_id: UUID
    version: int | None
    created_by: UUID | None
    created_at: datetime
    expires_at: datetime | None
    password_protected: bool
    max_downloads: int | None
    download_count: int
    revoked_at: datetime | None


class ShareCreated(BaseModel):
    share: ShareBody
    token: str = Field(description="Shown once; only its hash is kept")
    url: str
    download_url: str


class ShareList(BaseModel):
    items: list[ShareBody]


class AccessBody(BaseModel):
    id: UUID
    at: datetime
    ip: str
    user_agent: str
    outcome: str


class AccessList(BaseModel):
    items: list[AccessBody]


class AccessQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class PublicShareBody(BaseModel):
    name: str
    size: int
    mime_type: str
    kind: str
    version: int
    sha256: str
    downloadable: bool
    scan_status: str
    expires_at: datetime | None
    downloads_left: int | None
    download_url: str


def share_body(link: ShareLink) -> ShareBody:
    return ShareBody(
        id=link.id,
        file_id=link.file_id,  # type: ignore[attr-defined]
        version=link.version,
        created_by=link.created_by_id,  # type: ignore[attr-defined]
        created_at=link.created_at,
        expires_at=link.expires_at,
        password_protected=link.password_hash is not None,
        max_downloads=link.max_downloads,
        download_count=link.download_count,
        revoked_at=link.revoked_at,
    )


def access_body(row: ShareAccess) -> AccessBody:
    return AccessBody(
        id=row.id, at=row.at, ip=row.ip, user_agent=row.user_agent, outcome=row.outcome
    )


def _file_id(request: web.Request) -> UUID:
    return path_uuid(request, "file_id", not_found="file_not_found")


def _share_id(request: web.Request) -> UUID:
    return path_uuid(request, "share_id", not_found="share_not_found")


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    return token if len(token) <= MAX_TOKEN else ""


def _visitor(request: web.Request) -> Visitor:
    client = client_of(request)
    return Visitor(ip=client.ip, user_agent=client.user_agent)


def _public_path(token: str) -> str:
    return f"/api/v1/s/{token}"


@authenticated()
@operation(
    summary="Make a public link to a file (token shown once)",
    tags=TAGS,
    request=ShareCreate,
    responses={201: ShareCreated},
    auth=True,
)
async def create_share(request: web.Request) -> web.Response:
    body = await read_json(request, ShareCreate)
    created = await shares.create_share(
        principal=principal_of(request),
        file_id=_file_id(request),
        version=body.version,
        expires_in=(
            timedelta(seconds=body.expires_in_seconds)
            if body.expires_in_seconds is not None
            else None
        ),
        password=body.password,
        max_downloads=body.max_downloads,
    )
    base = request.app[SETTINGS].public_url.rstrip("/")
    path = _public_path(created.token)
    return json_response(
        ShareCreated(
            share=share_body(created.link),
            token=created.token,
            url=f"{base}{path}",
            download_url=f"{base}{path}/download",
        ),
        status=201,
    )


@authenticated()
@operation(summary="A file's share links", tags=TAGS, responses={200: ShareList}, auth=True)
async def list_shares(request: web.Request) -> web.Response:
    rows = await shares.list_shares(principal=principal_of(request), file_id=_file_id(request))
    return json_response(ShareList(items=[share_body(r) for r in rows]))


@authenticated()
@operation(summary="Revoke a share link", tags=TAGS, responses={200: ShareBody}, auth=True)
async def revoke_share(request: web.Request) -> web.Response:
    link = await shares.revoke_share(
        principal=principal_of(request), file_id=_file_id(request), share_id=_share_id(request)
    )
    return json_response(share_body(link))


@authenticated()
@operation(
    summary="Who used a share link, and how it went (newest first)",
    tags=TAGS,
    responses={200: AccessList},
    auth=True,
)
async def list_accesses(request: web.Request) -> web.Response:
    query = read_query(request, AccessQuery)
    rows = await shares.list_accesses(
        principal=principal_of(request),
        file_id=_file_id(request),
        share_id=_share_id(request),
        limit=query.limit,
        offset=query.offset,
    )
    return json_response(AccessList(items=[access_body(r) for r in rows]))


@public()
@operation(
    summary="A share link's file (public): name, size, type, whether it can be downloaded",
    description=f"Send the password of a protected link in `{PASSWORD_HEADER}`.",
    tags=TAGS,
    responses={200: PublicShareBody},
)
async def view_share(request: web.Request) -> web.Response:
    token = _token(request)
    target = await shares.open_share(
        token=token,
        password=request.headers.get(PASSWORD_HEADER),
        visitor=_visitor(request),
        limiter=request.app[LIMITER],
        download=False,
    )
    version = target.version
    return json_response(
        PublicShareBody(
            name=target.file.name,
            size=version.size,
            mime_type=version.mime_type,
            kind=version.kind,
            version=version.number,
            sha256=version.blob_key,
            downloadable=target.downloadable,
            scan_status=str(version.scan_status),
            expires_at=target.link.expires_at,
            downloads_left=target.downloads_left,
            download_url=f"{_public_path(token)}/download",
        )
    )


async def _download(request: web.Request, password: str | None) -> web.StreamResponse:
    visitor = _visitor(request)
    target = await shares.open_share(
        token=_token(request),
        password=password,
        visitor=visitor,
        limiter=request.app[LIMITER],
        download=True,
    )
    version = target.version
    blob = BlobDownload(
        key=version.blob_key,
        size=version.size,
        mime_type=version.mime_type,
        filename=target.file.name,
    )
    store = request.app[BLOBS]
    try:
        plan = await plan_download(request, store, blob)
    except RangeNotSatisfiable:
        await shares.log_share_access(target, visitor, ShareOutcome.BAD_RANGE)
        raise
    if plan.transfers:
        await shares.count_download(target, visitor)
    else:
        await shares.log_share_access(target, visitor, ShareOutcome.NOT_MODIFIED)
    return await send_download(request, store, blob, plan)


@public()
@operation(
    summary="Download through a share link (password in X-Share-Password)",
    description="Each answer with content (200, 206, or the 302 to the store) counts against "
    "the link's download limit; 304 and 416 do not.",
    tags=TAGS,
    responses=DOWNLOAD_RESPONSES,
    content_types=DOWNLOAD_CONTENT_TYPES,
)
async def download_share(request: web.Request) -> web.StreamResponse:
    return await _download(request, request.headers.get(PASSWORD_HEADER))


class PasswordForm(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


@public()
@operation(
    summary="Download through a password-protected share link (HTML form: password=...)",
    tags=TAGS,
    responses=DOWNLOAD_RESPONSES,
    content_types=DOWNLOAD_CONTENT_TYPES,
)
async def download_share_form(request: web.Request) -> web.StreamResponse:
    if request.content_type == "application/json":
        password: str | None = (await read_json(request, PasswordForm)).password
    else:
        form = await request.post()
        value = form.get("password")
        password = value if isinstance(value, str) else None
    return await _download(request, password)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/files/{file_id}/shares", create_share)
    r.add_get("/api/v1/files/{file_id}/shares", list_shares)
    r.add_delete("/api/v1/files/{file_id}/shares/{share_id}", revoke_share)
    r.add_get("/api/v1/files/{file_id}/shares/{share_id}/accesses", list_accesses)
    r.add_get("/api/v1/s/{token}", view_share)
    r.add_get("/api/v1/s/{token}/download", download_share, allow_head=False)
    r.add_post("/api/v1/s/{token}/download", download_share_form)
