"""Who may see and change a file or a folder: the one place files are authorised.

A file is readable by its owner, by users it is granted to (`FileGrant`, read only) and by staff
with `files:read_any`; writable by its owner and by staff with `files:write_any`. A folder is
readable by its owner and `files:read_any` staff, writable by its owner and `files:write_any`
staff (grants are per file, never per folder). Everyone else is told `file_not_found` /
`folder_not_found`, exactly as for an id that does not exist: no existence leak. A soft-deleted
file is not found for everybody.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from core.errors import NotFound
from core.permissions import Permission
from core.principal import Principal
from db.models.files import File, FileGrant, Folder


def file_not_found() -> NotFound:
    return NotFound("file_not_found", "No such file")


def folder_not_found() -> NotFound:
    return NotFound("folder_not_found", "No such folder")


def may_read_any(principal: Principal) -> bool:
    return principal.can(Permission.FILES_READ_ANY)


def may_write_any(principal: Principal) -> bool:
    return principal.can(Permission.FILES_WRITE_ANY)


async def _live_file(file_id: UUID) -> File:
    file = await File.get_or_none(id=file_id, deleted_at=None)
    if file is None:
        raise file_not_found()
    return file


async def is_granted(user_id: UUID, file_id: UUID) -> bool:
    return await FileGrant.exists(file_id=file_id, user_id=user_id)


async def check_can_read(principal: Principal, file_id: UUID) -> File:
    """The file, if the caller may read it; `NotFound("file_not_found")` otherwise."""
    file = await _live_file(file_id)
    if file.owner_id == principal.user_id or may_read_any(principal):  # type: ignore[attr-defined]
        return file
    if await is_granted(principal.user_id, file.id):
        return file
    raise file_not_found()


async def check_can_write(principal: Principal, file_id: UUID) -> File:
    """The file, if the caller may change it (owner or `files:write_any`). A grantee, who may
    read it, is told `file_not_found` too: a write refusal says nothing more than a read one."""
    file = await _live_file(file_id)
    if file.owner_id == principal.user_id or may_write_any(principal):  # type: ignore[attr-defined]
        return file
    raise file_not_found()


def readable_files(principal: Principal) -> QuerySet[File]:
    """The live files the caller may read, as a query to filter further or to select from."""
    live = File.filter(deleted_at=None)
    if may_read_any(principal):
        return live
    return live.filter(
        Q(owner_id=principal.user_id) | Q(grants__user_id=principal.user_id)
    ).distinct()


async def readable_file_ids(principal: Principal, ids: Iterable[UUID]) -> set[UUID]:
    """Those of `ids` the caller may read (live files only), in one query."""
    wanted = set(ids)
    if not wanted:
        return set()
    readable = readable_files(principal).filter(id__in=wanted)
    return set(await readable.values_list("id", flat=True))  # type: ignore[arg-type]


async def check_folder_readable(principal: Principal, folder_id: UUID) -> Folder:
    folder = await Folder.get_or_none(id=folder_id)
    if folder is None:
        raise folder_not_found()
    if folder.owner_id == principal.user_id or may_read_any(principal):  # type: ignore[attr-defined]
        return folder
    raise folder_not_found()


async def check_folder_writable(principal: Principal, folder_id: UUID) -> Folder:
    folder = await Folder.get_or_none(id=folder_id)
    if folder is None:
        raise folder_not_found()
    if folder.owner_id == principal.user_id or may_write_any(principal):  # type: ignore[attr-defined]
        return folder
    raise folder_not_found()


def check_owner_writable(principal: Principal, owner_id: UUID) -> None:
    """The caller may create things in `owner_id`'s tree (their own, or `files:write_any`)."""
    if owner_id != principal.user_id and not may_write_any(principal):
        raise NotFound("owner_not_found", "No such owner")


def check_owner_readable(principal: Principal, owner_id: UUID) -> None:
    if owner_id != principal.user_id and not may_read_any(principal):
        raise NotFound("owner_not_found", "No such owner")
