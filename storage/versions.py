"""File versions: land an uploaded blob as a new file or a new version, list, restore (roll
back), and decide whether a version may be downloaded.

Version numbers are gap-free per file, also under concurrency: a new version is numbered inside
a transaction that holds the file row (`SELECT ... FOR UPDATE`; SQLite serialises writers), and
the unique `(file, number)` backs it up. Events go out after the commit:
`file.uploaded` (uploads only) and `file.version_created` (uploads and restores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from core.bus import EventBus
from core.errors import AppError, Conflict, NotFound, ValidationFailed
from core.principal import Principal
from db.models.files import File, FileVersion, Folder, ScanStatus
from storage.blobs import StoredBlob
from storage.file_access import check_can_read, check_can_write, file_not_found
from storage.folders import sanitize_filename
from storage.search import build_search_text

DOWNLOADABLE = frozenset({ScanStatus.CLEAN, ScanStatus.UNSCANNED})


class FileLocked(AppError):
    """423: the version is quarantined (infected) or could not be scanned."""

    status = 423
    default_code = "file_quarantined"
    default_message = "The file is quarantined"


def version_not_found() -> NotFound:
    return NotFound("version_not_found", "No such version")


def check_downloadable(version: FileVersion) -> None:
    """Raise unless the version's scan allows a download: `file_not_scanned` (409) while the
    scan is pending, `file_quarantined` (423) when infected, `file_scan_failed` (423) when the
    scanner refused it."""
    status = ScanStatus(version.scan_status)
    if status in DOWNLOADABLE:
        return
    if status is ScanStatus.PENDING:
        raise Conflict("file_not_scanned", "The file is still being scanned for viruses")
    if status is ScanStatus.INFECTED:
        raise FileLocked("file_quarantined", "The file is quarantined: a virus was found")
    raise FileLocked("file_scan_failed", "The file could not be scanned and is not served")


def is_downloadable(version: FileVersion) -> bool:
    return ScanStatus(version.scan_status) in DOWNLOADABLE


@dataclass(frozen=True)
class NewVersion:
    file: File
    version: FileVersion


async def _next_number(file_id: UUID) -> int:
    last = await FileVersion.filter(file_id=file_id).order_by("-number").first()
    return (last.number if last is not None else 0) + 1


def _refresh_file(file: File, version: FileVersion, facts: dict[str, Any]) -> list[str]:
    file.current_version = version.number
    file.size = version.size
    file.mime_type = version.mime_type
    file.kind = version.kind
    file.search_text = build_search_text(
        name=file.name, tags=file.tags, kind=version.kind, facts=facts
    )
    return ["current_version", "size", "mime_type", "kind", "search_text", "updated_at"]


async def add_uploaded_version(
    *,
    owner_id: UUID,
    blob: StoredBlob,
    filename: str,
    mime_type: str,
    kind: str,
    folder_id: UUID | None,
    file_id: UUID | None,
    scan_status: ScanStatus,
    type_facts: dict[str, Any],
    upload_id: UUID | None,
    bus: EventBus,
) -> FileVersion:
    """A new file with version 1 (in `folder_id`, which must be `owner_id`'s), or version n+1
    of `file_id` (the caller has checked `check_can_write`; the file keeps its owner and folder,
    and `owner_id` is recorded as the version's uploader). Commits, then emits `file.uploaded`
    and `file.version_created`."""
    name = sanitize_filename(filename)
    async with in_transaction():
        if file_id is None:
            if folder_id is not None and not await Folder.exists(id=folder_id, owner_id=owner_id):
                raise NotFound("folder_not_found", "No such folder")
            file = await File.create(owner_id=owner_id, folder_id=folder_id, name=name)
        else:
            locked = await File.filter(id=file_id, deleted_at=None).select_for_update().first()
            if locked is None:
                raise file_not_found()
            file = locked
        version = await FileVersion.create(
            file=file,
            number=await _next_number(file.id),
            blob_key=blob.key,
            size=blob.size,
            mime_type=mime_type[:127],
            kind=kind[:20],
            original_name=name,
            scan_status=scan_status,
            metadata=dict(type_facts),
            created_by_id=owner_id,
        )
        await file.save(update_fields=_refresh_file(file, version, type_facts))
    file_owner = str(file.owner_id)  # type: ignore[attr-defined]
    await bus.emit(
        "file.uploaded",
        {
            "file_id": str(file.id),
            "version_id": str(version.id),
            "version": version.number,
            "owner_id": file_owner,
            "name": file.name,
            "size": version.size,
            "kind": version.kind,
            "mime_type": version.mime_type,
            "upload_id": str(upload_id) if upload_id is not None else None,
        },
        actor_id=str(owner_id),
        subject=f"file:{file.id}",
    )
    await _emit_version_created(bus, file, version, actor_id=owner_id)
    return version


async def _emit_version_created(
    bus: EventBus, file: File, version: FileVersion, *, actor_id: UUID
) -> None:
    await bus.emit(
        "file.version_created",
        {
            "file_id": str(file.id),
            "version_id": str(version.id),
            "version": version.number,
            "owner_id": str(file.owner_id),  # type: ignore[attr-defined]
            "blob_key": version.blob_key,
            "kind": version.kind,
            "restored_from": version.restored_from,
        },
        actor_id=str(actor_id),
        subject=f"file:{file.id}",
    )


async def list_versions(*, principal: Principal, file_id: UUID) -> list[FileVersion]:
    file = await check_can_read(principal, file_id)
    return list(await FileVersion.filter(file_id=file.id).order_by("-number"))


async def get_version(
    *, principal: Principal, file_id: UUID, number: int | None
) -> tuple[File, FileVersion]:
    """A readable file and one of its versions (None: the current one)."""
    file = await check_can_read(principal, file_id)
    return file, await version_of(file, number)


async def version_of(file: File, number: int | None) -> FileVersion:
    wanted = file.current_version if number is None else number
    version = await FileVersion.get_or_none(file_id=file.id, number=wanted)
    if version is None:
        raise version_not_found()
    return version


async def restore_version(
    *, principal: Principal, file_id: UUID, number: int, bus: EventBus
) -> FileVersion:
    """Roll back: a new version n+1 with version `number`'s blob and facts (`restored_from`).
    Nothing is rewritten. An infected or unscannable version is not restored."""
    await check_can_write(principal, file_id)
    async with in_transaction():
        file = await File.filter(id=file_id, deleted_at=None).select_for_update().first()
        if file is None:
            raise file_not_found()
        source = await FileVersion.get_or_none(file_id=file.id, number=number)
        if source is None:
            raise version_not_found()
        if ScanStatus(source.scan_status) in (ScanStatus.INFECTED, ScanStatus.FAILED):
            check_downloadable(source)
        if source.number == file.current_version:
            raise ValidationFailed("version_is_current", "This version is already the current one")
        version = await FileVersion.create(
            file=file,
            number=await _next_number(file.id),
            blob_key=source.blob_key,
            size=source.size,
            mime_type=source.mime_type,
            kind=source.kind,
            original_name=source.original_name,
            scan_status=source.scan_status,
            scan_signature=source.scan_signature,
            scanned_at=source.scanned_at,
            metadata=dict(source.metadata),
            restored_from=source.number,
            created_by_id=principal.user_id,
        )
        await file.save(update_fields=_refresh_file(file, version, source.metadata))
    await _emit_version_created(bus, file, version, actor_id=principal.user_id)
    return version
