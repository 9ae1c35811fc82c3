"""Files: a folder tree per owner, files with numbered versions over content-addressed blobs,
grants to other users, public share links and their access log, and the state of resumable
(tus) uploads.

A `FileVersion` points at a blob by its sha256 (`blob_key`); rolling back makes a new version
that points at an old blob, so versions are never rewritten. `File.current_version` is the
number of the version a plain download serves. A version is downloadable only once its scan
says `clean` (or `unscanned`, when no scanner is configured).

An `Upload` row is the persisted half of a tus upload: its offset, declared length, metadata and
the blob store's resumable state (`backend_state`), so a restarted server answers `HEAD` with
the right offset and goes on where the bytes stopped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class ScanStatus(StrEnum):
    UNSCANNED = "unscanned"  # no scanner configured (embedded default): not scanned, said so
    PENDING = "pending"  # waiting for clamd, or clamd unreachable and a retry is due
    CLEAN = "clean"
    INFECTED = "infected"  # quarantined: never downloadable
    FAILED = "failed"  # clamd refused the stream (too big, unreadable): never downloadable


class UploadKind(StrEnum):
    SINGLE = "single"
    PARTIAL = "partial"  # a piece of a concatenation: never becomes a file on its own
    FINAL = "final"  # the concatenation of partial uploads


class UploadState(StrEnum):
    ACTIVE = "active"
    COMPLETE = "complete"
    FAILED = "failed"  # finished but refused (type mismatch, zip bomb): error_code says why


class Folder(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    owner: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="folders", on_delete=fields.CASCADE
    )
    parent: fields.ForeignKeyNullableRelation[Folder] = fields.ForeignKeyField(
        "models.Folder", related_name="children", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "folders"
        unique_together = (("owner", "parent", "name"),)


class File(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    owner: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="files", on_delete=fields.CASCADE
    )
    folder: fields.ForeignKeyNullableRelation[Folder] = fields.ForeignKeyField(
        "models.Folder", related_name="files", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=255)
    current_version = fields.IntField(default=0, description="0 until the first version lands")
    size = fields.BigIntField(default=0, description="Size of the current version")
    mime_type = fields.CharField(max_length=127, default="")
    kind = fields.CharField(max_length=20, default="", description="Detected type, e.g. stl")
    tags: fields.JSONField[list[str]] = fields.JSONField(default=list)
    search_text = fields.TextField(default="", description="Name, tags and metadata for search")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "files"
        indexes = (("owner_id", "folder_id"),)


class FileVersion(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    file: fields.ForeignKeyRelation[File] = fields.ForeignKeyField(
        "models.File", related_name="versions", on_delete=fields.CASCADE
    )
    number = fields.IntField()
    blob_key = fields.CharField(max_length=64, description="sha256 hex of the content")
    size = fields.BigIntField()
    mime_type = fields.CharField(max_length=127, default="")
    kind = fields.CharField(max_length=20, default="")
    original_name = fields.CharField(max_length=255, default="")
    scan_status = fields.CharEnumField(ScanStatus, max_length=10, default=ScanStatus.PENDING)
    scan_signature = fields.CharField(max_length=200, null=True)
    scan_attempts = fields.IntField(default=0)
    next_scan_at = fields.DatetimeField(null=True)
    scanned_at = fields.DatetimeField(null=True)
    metadata: fields.JSONField[dict[str, Any]] = fields.JSONField(
        default=dict, description="Geometry facts from the render farm, type facts"
    )
    restored_from = fields.IntField(null=True, description="The version a rollback copied")
    created_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="file_versions", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "file_versions"
        unique_together = (("file", "number"),)
        indexes = (("scan_status", "next_scan_at"), ("blob_key",))


class FileGrant(Model):
    """A file shared with another user of the portal (read access)."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    file: fields.ForeignKeyRelation[File] = fields.ForeignKeyField(
        "models.File", related_name="grants", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="file_grants", on_delete=fields.CASCADE
    )
    granted_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="file_grants_given", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "file_grants"
        unique_together = (("file", "user"),)


class ShareLink(Model):
    """A public link `/s/{token}`. Only the token's sha256 is stored."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    file: fields.ForeignKeyRelation[File] = fields.ForeignKeyField(
        "models.File", related_name="share_links", on_delete=fields.CASCADE
    )
    version = fields.IntField(null=True, description="A fixed version, or null for the current")
    token_digest = fields.CharField(max_length=64, unique=True)
    created_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="share_links", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True)
    password_hash = fields.CharField(max_length=200, null=True)
    max_downloads = fields.IntField(null=True)
    download_count = fields.IntField(default=0)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "share_links"


class ShareAccess(Model):
    """One use of a share link, whatever its outcome."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    link: fields.ForeignKeyRelation[ShareLink] = fields.ForeignKeyField(
        "models.ShareLink", related_name="accesses", on_delete=fields.CASCADE
    )
    at = fields.DatetimeField(auto_now_add=True)
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=300, default="")
    outcome = fields.CharField(max_length=40)

    class Meta:
        table = "share_accesses"
        indexes = (("link_id", "at"),)


class Upload(Model):
    """A tus upload. `id` is the last segment of its URL."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    owner: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="uploads", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(UploadKind, max_length=10, default=UploadKind.SINGLE)
    state = fields.CharEnumField(UploadState, max_length=10, default=UploadState.ACTIVE)
    length = fields.BigIntField(null=True, description="Upload-Length, null while deferred")
    offset = fields.BigIntField(default=0)
    metadata: fields.JSONField[dict[str, str]] = fields.JSONField(default=dict)
    parts: fields.JSONField[list[str]] = fields.JSONField(
        default=list, description="Partial upload ids of a final upload, in order"
    )
    backend_state: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    reserved_bytes = fields.BigIntField(default=0, description="Temporary disk held")
    error_code = fields.CharField(max_length=50, default="")
    file_version: fields.ForeignKeyNullableRelation[FileVersion] = fields.ForeignKeyField(
        "models.FileVersion", related_name="uploads", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    expires_at = fields.DatetimeField()
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "uploads"
        indexes = (("state", "expires_at"), ("owner_id", "state"))
