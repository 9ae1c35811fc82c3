"""The folder tree of each owner (a customer's projects): create, list, rename, move, delete.

Names are unique among siblings (case-sensitive). A move never makes a cycle: moves of one
owner's folders are serialised on the owner's user row (`SELECT ... FOR UPDATE`), and the new
parent's ancestry is walked inside that lock. Deleting a folder needs it empty (no sub-folders,
no live files) unless `recursive`: then every live file below is soft-deleted and moved out to
the root (its versions, grants and share links stay, for the record), and the folders go.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from uuid import UUID

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.errors import Conflict, ValidationFailed
from core.principal import Principal
from db.models.files import File, Folder
from db.models.identity import User
from storage.file_access import (
    check_folder_readable,
    check_folder_writable,
    check_owner_readable,
    check_owner_writable,
)

MAX_NAME = 255
MAX_DEPTH = 32


def check_name(name: str, *, field: str = "name") -> str:
    """A file or folder name: NFC, trimmed, 1..255 characters, no slashes, no control
    characters, not `.` or `..`."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    invalid = (
        not cleaned
        or len(cleaned) > MAX_NAME
        or cleaned in (".", "..")
        or any(c in "/\\" or unicodedata.category(c).startswith("C") for c in cleaned)
    )
    if invalid:
        raise ValidationFailed(
            "invalid_name",
            "A name has 1 to 255 characters, no slashes or control characters",
            details={"field": field},
        )
    return cleaned


def sanitize_filename(filename: str) -> str:
    """An uploaded file's name made acceptable instead of refused: the last path segment,
    control characters replaced, at most 255 characters (the extension kept), `unnamed` if
    nothing is left."""
    base = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join("_" if unicodedata.category(c).startswith("C") else c for c in base).strip()
    if base in ("", ".", ".."):
        return "unnamed"
    if len(base) > MAX_NAME:
        _, dot, extension = base.rpartition(".")
        keep = extension if dot and 0 < len(extension) <= 16 else ""
        base = base[: MAX_NAME - len(keep) - 1] + "." + keep if keep else base[:MAX_NAME]
    return base


@dataclass(frozen=True)
class FolderListing:
    folders: list[Folder]


def _name_taken() -> Conflict:
    return Conflict("folder_name_taken", "A folder with this name is already there")


async def _check_sibling_free(owner_id: UUID, parent_id: UUID | None, name: str) -> None:
    # The unique constraint covers siblings under a parent; at the root parent is NULL, which
    # SQL unique constraints do not compare, so the root is checked here (under the owner lock).
    if await Folder.exists(owner_id=owner_id, parent_id=parent_id, name=name):
        raise _name_taken()


async def _lock_owner(owner_id: UUID) -> None:
    await User.filter(id=owner_id).select_for_update().first()


async def create_folder(
    *, principal: Principal, name: str, parent_id: UUID | None, owner_id: UUID | None
) -> Folder:
    name = check_name(name)
    if parent_id is not None:
        parent = await check_folder_writable(principal, parent_id)
        owner = parent.owner_id  # type: ignore[attr-defined]
        if owner_id is not None and owner_id != owner:
            raise ValidationFailed("owner_mismatch", "The parent folder belongs to someone else")
    else:
        owner = owner_id or principal.user_id
        check_owner_writable(principal, owner)
    try:
        async with in_transaction():
            await _lock_owner(owner)
            await _check_sibling_free(owner, parent_id, name)
            return await Folder.create(owner_id=owner, parent_id=parent_id, name=name)
    except IntegrityError:
        raise _name_taken() from None


async def list_folders(
    *, principal: Principal, parent_id: UUID | None, owner_id: UUID | None
) -> FolderListing:
    """The children of `parent_id`, or the root folders of `owner_id` (default: the caller)."""
    if parent_id is not None:
        parent = await check_folder_readable(principal, parent_id)
        rows = await Folder.filter(parent_id=parent.id).order_by("name", "id")
    else:
        owner = owner_id or principal.user_id
        check_owner_readable(principal, owner)
        rows = await Folder.filter(owner_id=owner, parent_id=None).order_by("name", "id")
    return FolderListing(folders=list(rows))


async def get_folder(*, principal: Principal, folder_id: UUID) -> Folder:
    return await check_folder_readable(principal, folder_id)


async def rename_folder(*, principal: Principal, folder_id: UUID, name: str) -> Folder:
    name = check_name(name)
    folder = await check_folder_writable(principal, folder_id)
    owner = folder.owner_id  # type: ignore[attr-defined]
    try:
        async with in_transaction():
            await _lock_owner(owner)
            if name != folder.name:
                await _check_sibling_free(owner, folder.parent_id, name)  # type: ignore[attr-defined]
            folder.name = name
            await folder.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        raise _name_taken() from None
    return folder


async def move_folder(*, principal: Principal, folder_id: UUID, parent_id: UUID | None) -> Folder:
    """Move under `parent_id` (None: to the root). Refused with `folder_cycle` when the new
    parent is the folder itself or below it."""
    folder = await check_folder_writable(principal, folder_id)
    owner = folder.owner_id  # type: ignore[attr-defined]
    if parent_id is not None:
        parent = await check_folder_writable(principal, parent_id)
        if parent.owner_id != owner:  # type: ignore[attr-defined]
            raise ValidationFailed("owner_mismatch", "A folder moves only within its owner's tree")
    try:
        async with in_transaction():
            await _lock_owner(owner)
            current = await Folder.get(id=folder.id)
            if parent_id is not None:
                await _check_no_cycle(folder.id, parent_id)
            if current.parent_id != parent_id:  # type: ignore[attr-defined]
                await _check_sibling_free(owner, parent_id, current.name)
            current.parent_id = parent_id
            await current.save(update_fields=["parent_id", "updated_at"])
    except IntegrityError:
        raise _name_taken() from None
    return current


async def _check_no_cycle(folder_id: UUID, new_parent_id: UUID) -> None:
    cursor: UUID | None = new_parent_id
    depth = 0
    while cursor is not None:
        if cursor == folder_id:
            raise Conflict("folder_cycle", "A folder cannot move into itself or its sub-folders")
        depth += 1
        if depth > MAX_DEPTH:
            raise Conflict("folder_too_deep", f"Folders nest at most {MAX_DEPTH} deep")
        row = await Folder.get_or_none(id=cursor)
        cursor = row.parent_id if row is not None else None  # type: ignore[attr-defined]


async def _subtree(folder_id: UUID) -> list[UUID]:
    """The folder and every folder below it, parents before children."""
    found = [folder_id]
    frontier = [folder_id]
    while frontier:
        children: list[UUID] = list(
            await Folder.filter(parent_id__in=frontier).values_list("id", flat=True)  # type: ignore[arg-type]
        )
        found.extend(children)
        frontier = children
    return found


@dataclass(frozen=True)
class FolderDeleted:
    folders: int
    files: int  # live files soft-deleted with them


async def delete_folder(*, principal: Principal, folder_id: UUID, recursive: bool) -> FolderDeleted:
    folder = await check_folder_writable(principal, folder_id)
    owner = folder.owner_id  # type: ignore[attr-defined]
    async with in_transaction():
        await _lock_owner(owner)
        ids = await _subtree(folder.id)
        live = File.filter(folder_id__in=ids, deleted_at=None)
        live_count = await live.count()
        if not recursive and (len(ids) > 1 or live_count):
            raise Conflict(
                "folder_not_empty",
                "The folder has sub-folders or files: delete them first, or pass recursive=true",
                details={"folders": len(ids) - 1, "files": live_count},
            )
        now = utcnow()
        await live.update(deleted_at=now, folder_id=None)
        # Files deleted earlier keep their rows too (the folder FK would cascade them away).
        await File.filter(folder_id__in=ids).update(folder_id=None)
        await Folder.filter(id=folder.id).delete()  # the database cascades to sub-folders
    return FolderDeleted(folders=len(ids), files=live_count)
