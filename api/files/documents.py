"""Files and folders over REST: list and search, get, rename, move, tags, soft delete; versions,
downloads, rollback and diffs; grants to other users.

There is no `POST /files`: a file comes into being with its first upload (tus, `/uploads/`).
Every file route answers `file_not_found` (404) to a caller who may not see the file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from api.auth import authenticated, principal_of
from api.files.downloads import (
    DOWNLOAD_CONTENT_TYPES,
    DOWNLOAD_RESPONSES,
    BlobDownload,
    plan_download,
    send_download,
)
from api.files.notices import tell_grantee
from api.keys import BLOBS, BUS
from api.openapi import operation
from api.requests import json_response, path_uuid, read_json, read_query
from core.errors import NotFound, ValidationFailed
from db.models.files import File, FileVersion, Folder
from hub.notify import Inbox
from storage import documents, folders, versions
from storage.diffs import VersionDiff, diff_versions
from storage.search import FileFilter, FileOrder, FileScope

TAGS = ("files",)
MAX_PAGE = 200


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- bodies ------------------------------------------------------------------------------------


class FolderBody(BaseModel):
    id: UUID
    owner_id: UUID
    parent_id: UUID | None
    name: str
    created_at: datetime
    updated_at: datetime


class FolderList(BaseModel):
    items: list[FolderBody]


class FolderCreate(Strict):
    name: str = Field(min_length=1, max_length=255)
    parent_id: UUID | None = None
    owner_id: UUID | None = Field(
        default=None, description="Another user's tree (staff with files:write_any)"
    )


class FolderUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    parent_id: UUID | None = Field(
        default=None, description="Move under this folder; an explicit null moves to the root"
    )


class FolderQuery(BaseModel):
    parent_id: UUID | None = None
    owner_id: UUID | None = None


class FolderDeleteQuery(BaseModel):
    recursive: bool = False


class FolderDeletedBody(BaseModel):
    folders: int
    files: int


class FileBody(BaseModel):
    id: UUID
    owner_id: UUID
    folder_id: UUID | None
    name: str
    current_version: int
    size: int
    mime_type: str
    kind: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class VersionBody(BaseModel):
    id: UUID
    number: int
    size: int
    mime_type: str
    kind: str
    original_name: str
    sha256: str
    scan_status: str
    downloadable: bool
    metadata: dict[str, Any]
    restored_from: int | None
    created_by: UUID | None
    created_at: datetime


class FileDetailBody(FileBody):
    current: VersionBody | None
    access: Literal["owner", "grant", "staff"]


class FilePageBody(BaseModel):
    items: list[FileBody]
    next_offset: int | None


class FileQuery(BaseModel):
    folder_id: UUID | Literal["root"] | None = Field(
        default=None, description="A folder's files, or `root` for files outside any folder"
    )
    owner_id: UUID | None = None
    tag: str | None = Field(default=None, max_length=80)
    q: str | None = Field(default=None, max_length=200, description="Search names, tags, facts")
    scope: FileScope = FileScope.ALL
    order: FileOrder = FileOrder.NAME
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=100_000)


class FileUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    folder_id: UUID | None = Field(
        default=None, description="Move into this folder; an explicit null moves to the root"
    )


class TagsReplace(Strict):
    tags: list[str] = Field(max_length=documents.MAX_TAGS)


class TagsChange(Strict):
    add: list[str] = Field(default_factory=list, max_length=documents.MAX_TAGS)
    remove: list[str] = Field(default_factory=list, max_length=100)


class VersionList(BaseModel):
    items: list[VersionBody]


class DiffQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from", ge=1)
    to: int = Field(ge=1)


class MetadataChangeBody(BaseModel):
    key: str
    before: Any
    after: Any
    delta: float | None


class DiffBody(BaseModel):
    kind: Literal["text", "metadata"]
    from_version: int
    to_version: int
    identical: bool
    unified: str | None
    changes: list[MetadataChangeBody]


class GrantCreate(Strict):
    user_id: UUID | None = None
    email: EmailStr | None = None


class GrantBody(BaseModel):
    user_id: UUID
    email: str
    granted_by: UUID | None
    created_at: datetime


class GrantList(BaseModel):
    items: list[GrantBody]


# -- conversions -------------------------------------------------------------------------------


def folder_body(row: Folder) -> FolderBody:
    return FolderBody(
        id=row.id,
        owner_id=row.owner_id,  # type: ignore[attr-defined]
        parent_id=row.parent_id,  # type: ignore[attr-defined]
        name=row.name,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def file_body(row: File) -> FileBody:
    return FileBody(
        id=row.id,
        owner_id=row.owner_id,  # type: ignore[attr-defined]
        folder_id=row.folder_id,  # type: ignore[attr-defined]
        name=row.name,
        current_version=row.current_version,
        size=row.size,
        mime_type=row.mime_type,
        kind=row.kind,
        tags=list(row.tags),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def version_body(row: FileVersion) -> VersionBody:
    return VersionBody(
        id=row.id,
        number=row.number,
        size=row.size,
        mime_type=row.mime_type,
        kind=row.kind,
        original_name=row.original_name,
        sha256=row.blob_key,
        scan_status=str(row.scan_status),
        downloadable=versions.is_downloadable(row),
        metadata=dict(row.metadata),
        restored_from=row.restored_from,
        created_by=row.created_by_id,  # type: ignore[attr-defined]
        created_at=row.created_at,
    )


def diff_body(diff: VersionDiff) -> DiffBody:
    return DiffBody(
        kind=diff.kind.value,
        from_version=diff.from_version,
        to_version=diff.to_version,
        identical=diff.identical,
        unified=diff.unified,
        changes=[
            MetadataChangeBody(key=c.key, before=c.before, after=c.after, delta=c.delta)
            for c in diff.changes
        ],
    )


def _file_id(request: web.Request) -> UUID:
    return path_uuid(request, "file_id", not_found="file_not_found")


def _folder_id(request: web.Request) -> UUID:
    return path_uuid(request, "folder_id", not_found="folder_not_found")


def _version_number(request: web.Request) -> int:
    raw = request.match_info["number"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound("version_not_found", "No such version")
    return int(raw)


# -- folders -----------------------------------------------------------------------------------


@authenticated()
@operation(
    summary="Create a folder (at the root, or under a parent folder)",
    tags=TAGS,
    request=FolderCreate,
    responses={201: FolderBody},
    auth=True,
)
async def create_folder(request: web.Request) -> web.Response:
    body = await read_json(request, FolderCreate)
    row = await folders.create_folder(
        principal=principal_of(request),
        name=body.name,
        parent_id=body.parent_id,
        owner_id=body.owner_id,
    )
    return json_response(folder_body(row), status=201)


@authenticated()
@operation(
    summary="Folders: the children of parent_id, or the root folders of owner_id (default: you)",
    tags=TAGS,
    responses={200: FolderList},
    auth=True,
)
async def list_folders(request: web.Request) -> web.Response:
    query = read_query(request, FolderQuery)
    listing = await folders.list_folders(
        principal=principal_of(request), parent_id=query.parent_id, owner_id=query.owner_id
    )
    return json_response(FolderList(items=[folder_body(f) for f in listing.folders]))


@authenticated()
@operation(summary="One folder", tags=TAGS, responses={200: FolderBody}, auth=True)
async def get_folder(request: web.Request) -> web.Response:
    row = await folders.get_folder(principal=principal_of(request), folder_id=_folder_id(request))
    return json_response(folder_body(row))


@authenticated()
@operation(
    summary="Rename a folder, or move it (parent_id; null: to the root; never into itself)",
    tags=TAGS,
    request=FolderUpdate,
    responses={200: FolderBody},
    auth=True,
)
async def update_folder(request: web.Request) -> web.Response:
    body = await read_json(request, FolderUpdate)
    principal = principal_of(request)
    folder_id = _folder_id(request)
    row: Folder | None = None
    if body.name is not None:
        row = await folders.rename_folder(principal=principal, folder_id=folder_id, name=body.name)
    if "parent_id" in body.model_fields_set:
        row = await folders.move_folder(
            principal=principal, folder_id=folder_id, parent_id=body.parent_id
        )
    if row is None:
        raise ValidationFailed("nothing_to_change", "Give a name or a parent_id")
    return json_response(folder_body(row))


@authenticated()
@operation(
    summary="Delete a folder: only an empty one, unless recursive=true (its files are "
    "soft-deleted)",
    tags=TAGS,
    responses={200: FolderDeletedBody},
    auth=True,
)
async def delete_folder(request: web.Request) -> web.Response:
    query = read_query(request, FolderDeleteQuery)
    deleted = await folders.delete_folder(
        principal=principal_of(request), folder_id=_folder_id(request), recursive=query.recursive
    )
    return json_response(FolderDeletedBody(folders=deleted.folders, files=deleted.files))


# -- files -------------------------------------------------------------------------------------


@authenticated()
@operation(
    summary="List or search files you may read (by folder, owner, tag, words), paged",
    description="`q` matches word prefixes in names, tags and extracted facts; all words must "
    "match. The order is stable (the chosen column, then id); page with limit and offset.",
    tags=TAGS,
    responses={200: FilePageBody},
    auth=True,
)
async def list_files(request: web.Request) -> web.Response:
    query = read_query(request, FileQuery)
    tag = documents.normalize_tag(query.tag) if query.tag is not None else None
    where = FileFilter(
        folder_id=query.folder_id if isinstance(query.folder_id, UUID) else None,
        root_only=query.folder_id == "root",
        owner_id=query.owner_id,
        tag=tag,
        query=query.q,
        scope=query.scope,
    )
    page = await documents.list_files(
        principal=principal_of(request),
        where=where,
        order=query.order,
        limit=query.limit,
        offset=query.offset,
    )
    return json_response(
        FilePageBody(items=[file_body(f) for f in page.items], next_offset=page.next_offset)
    )


@authenticated()
@operation(
    summary="One file, with its current version",
    tags=TAGS,
    responses={200: FileDetailBody},
    auth=True,
)
async def get_file(request: web.Request) -> web.Response:
    principal = principal_of(request)
    detail = await documents.get_file(principal=principal, file_id=_file_id(request))
    body = FileDetailBody(
        **file_body(detail.file).model_dump(),
        current=version_body(detail.current) if detail.current is not None else None,
        access=detail.access,
    )
    return json_response(body)


@authenticated()
@operation(
    summary="Rename a file, or move it (folder_id; null: to the root)",
    tags=TAGS,
    request=FileUpdate,
    responses={200: FileBody},
    auth=True,
)
async def update_file(request: web.Request) -> web.Response:
    body = await read_json(request, FileUpdate)
    principal = principal_of(request)
    file_id = _file_id(request)
    row: File | None = None
    if body.name is not None:
        row = await documents.rename_file(principal=principal, file_id=file_id, name=body.name)
    if "folder_id" in body.model_fields_set:
        row = await documents.move_file(
            principal=principal, file_id=file_id, folder_id=body.folder_id
        )
    if row is None:
        raise ValidationFailed("nothing_to_change", "Give a name or a folder_id")
    return json_response(file_body(row))


@authenticated()
@operation(
    summary="Delete a file (soft: hidden for everyone)", tags=TAGS, responses={204: None}, auth=True
)
async def delete_file(request: web.Request) -> web.Response:
    await documents.delete_file(principal=principal_of(request), file_id=_file_id(request))
    return web.Response(status=204)


@authenticated()
@operation(
    summary="Replace a file's tags (lower-cased; at most 20 of 40 characters)",
    tags=TAGS,
    request=TagsReplace,
    responses={200: FileBody},
    auth=True,
)
async def replace_tags(request: web.Request) -> web.Response:
    body = await read_json(request, TagsReplace)
    row = await documents.update_tags(
        principal=principal_of(request), file_id=_file_id(request), replace=body.tags
    )
    return json_response(file_body(row))


@authenticated()
@operation(
    summary="Add and remove some of a file's tags",
    tags=TAGS,
    request=TagsChange,
    responses={200: FileBody},
    auth=True,
)
async def change_tags(request: web.Request) -> web.Response:
    body = await read_json(request, TagsChange)
    row = await documents.update_tags(
        principal=principal_of(request),
        file_id=_file_id(request),
        add=body.add,
        remove=body.remove,
    )
    return json_response(file_body(row))


# -- versions ----------------------------------------------------------------------------------


@authenticated()
@operation(
    summary="A file's versions, newest first", tags=TAGS, responses={200: VersionList}, auth=True
)
async def list_versions(request: web.Request) -> web.Response:
    rows = await versions.list_versions(principal=principal_of(request), file_id=_file_id(request))
    return json_response(VersionList(items=[version_body(v) for v in rows]))


@authenticated()
@operation(summary="One version of a file", tags=TAGS, responses={200: VersionBody}, auth=True)
async def get_version(request: web.Request) -> web.Response:
    _, row = await versions.get_version(
        principal=principal_of(request), file_id=_file_id(request), number=_version_number(request)
    )
    return json_response(version_body(row))


async def _download(request: web.Request, number: int | None) -> web.StreamResponse:
    file, version = await versions.get_version(
        principal=principal_of(request), file_id=_file_id(request), number=number
    )
    versions.check_downloadable(version)
    blob = BlobDownload(
        key=version.blob_key, size=version.size, mime_type=version.mime_type, filename=file.name
    )
    store = request.app[BLOBS]
    plan = await plan_download(request, store, blob)
    return await send_download(request, store, blob, plan)


@authenticated()
@operation(
    summary="Download a version (Range, ETag/If-None-Match; a 302 to the store on S3)",
    description="Only versions whose scan is clean (or unscanned, without a scanner) are "
    "served: `file_not_scanned` (409) while pending, `file_quarantined` / `file_scan_failed` "
    "(423).",
    tags=TAGS,
    responses=DOWNLOAD_RESPONSES,
    content_types=DOWNLOAD_CONTENT_TYPES,
    auth=True,
)
async def download_version(request: web.Request) -> web.StreamResponse:
    return await _download(request, _version_number(request))


@authenticated()
@operation(
    summary="Download the current version (as .../versions/{n}/download)",
    tags=TAGS,
    responses=DOWNLOAD_RESPONSES,
    content_types=DOWNLOAD_CONTENT_TYPES,
    auth=True,
)
async def download_current(request: web.Request) -> web.StreamResponse:
    return await _download(request, None)


@authenticated()
@operation(
    summary="Roll back: a new version that restores version n's content",
    tags=TAGS,
    responses={201: VersionBody},
    auth=True,
)
async def restore_version(request: web.Request) -> web.Response:
    row = await versions.restore_version(
        principal=principal_of(request),
        file_id=_file_id(request),
        number=_version_number(request),
        bus=request.app[BUS],
    )
    return json_response(version_body(row), status=201)


@authenticated()
@operation(
    summary="Compare two versions: a unified diff (text) or a measurements diff (CAD)",
    description="Text diffs are limited to 1 MiB per version (`diff_too_large`); other types "
    "answer `diff_unsupported`.",
    tags=TAGS,
    responses={200: DiffBody},
    auth=True,
)
async def diff(request: web.Request) -> web.Response:
    query = read_query(request, DiffQuery)
    result = await diff_versions(
        principal=principal_of(request),
        file_id=_file_id(request),
        from_number=query.from_,
        to_number=query.to,
        store=request.app[BLOBS],
    )
    return json_response(diff_body(result))


# -- grants ------------------------------------------------------------------------------------


def grant_body(grant: documents.Grant) -> GrantBody:
    return GrantBody(
        user_id=grant.user_id,
        email=grant.email,
        granted_by=grant.granted_by_id,
        created_at=grant.created_at,
    )


@authenticated()
@operation(
    summary="Users the file is granted to (read access)",
    tags=TAGS,
    responses={200: GrantList},
    auth=True,
)
async def list_grants(request: web.Request) -> web.Response:
    rows = await documents.list_grants(principal=principal_of(request), file_id=_file_id(request))
    return json_response(GrantList(items=[grant_body(g) for g in rows]))


@authenticated()
@operation(
    summary="Grant another user read access (by user_id or email; idempotent)",
    tags=TAGS,
    request=GrantCreate,
    responses={201: GrantBody},
    auth=True,
)
async def grant(request: web.Request) -> web.Response:
    body = await read_json(request, GrantCreate)
    row = await documents.grant_file(
        principal=principal_of(request),
        file_id=_file_id(request),
        user_id=body.user_id,
        email=str(body.email) if body.email is not None else None,
    )
    if row.new:
        await tell_grantee(inbox=Inbox(bus=request.app[BUS]), grant=row, file_id=_file_id(request))
    return json_response(grant_body(row), status=201)


@authenticated()
@operation(summary="Take a grant back", tags=TAGS, responses={204: None}, auth=True)
async def revoke_grant(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id", not_found="grant_not_found")
    await documents.revoke_grant(
        principal=principal_of(request), file_id=_file_id(request), user_id=user_id
    )
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/folders", create_folder)
    r.add_get("/api/v1/folders", list_folders)
    r.add_get("/api/v1/folders/{folder_id}", get_folder)
    r.add_patch("/api/v1/folders/{folder_id}", update_folder)
    r.add_delete("/api/v1/folders/{folder_id}", delete_folder)
    r.add_get("/api/v1/files", list_files)
    r.add_get("/api/v1/files/{file_id}", get_file)
    r.add_patch("/api/v1/files/{file_id}", update_file)
    r.add_delete("/api/v1/files/{file_id}", delete_file)
    r.add_put("/api/v1/files/{file_id}/tags", replace_tags)
    r.add_patch("/api/v1/files/{file_id}/tags", change_tags)
    r.add_get("/api/v1/files/{file_id}/versions", list_versions)
    r.add_get("/api/v1/files/{file_id}/versions/{number}", get_version)
    r.add_get("/api/v1/files/{file_id}/versions/{number}/download", download_version)
    r.add_post("/api/v1/files/{file_id}/versions/{number}/restore", restore_version)
    r.add_get("/api/v1/files/{file_id}/download", download_current)
    r.add_get("/api/v1/files/{file_id}/diff", diff)
    r.add_get("/api/v1/files/{file_id}/grants", list_grants)
    r.add_post("/api/v1/files/{file_id}/grants", grant)
    r.add_delete("/api/v1/files/{file_id}/grants/{user_id}", revoke_grant)
