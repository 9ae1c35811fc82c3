"""Documents: the files service. Files in folders, with tags, soft delete and grants; the
contract other parts code to (`add_uploaded_version`, `check_can_read`, `check_can_write`,
`readable_file_ids`) is re-exported here.

Split by concern: access rules in `file_access`, the folder tree in `folders`, versions and
rollback in `versions`, listing and search in `search`, diffs in `diffs`, share links in
`shares`. This module holds what changes a file itself.

Tags are normalised: trimmed, inner whitespace collapsed, lower-cased; 1..40 characters of
letters, digits, space, `-`, `_`, `.`; at most 20 per file, kept in the order first given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal
from uuid import UUID

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.errors import NotFound, ValidationFailed
from core.principal import Principal
from db.models.files import File, FileGrant, FileVersion, Folder
from db.models.identity import User
from storage.file_access import (
    check_can_read,
    check_can_write,
    check_folder_readable,
    file_not_found,
    folder_not_found,
    may_read_any,
    readable_file_ids,
)
from storage.folders import check_name
from storage.search import (
    FileFilter,
    FileOrder,
    FilePage,
    build_search_text,
    find_files,
)
from storage.versions import add_uploaded_version

__all__ = [
    "FileDetail",
    "add_uploaded_version",
    "check_can_read",
    "check_can_write",
    "delete_file",
    "get_file",
    "grant_file",
    "list_files",
    "list_grants",
    "move_file",
    "normalize_tags",
    "readable_file_ids",
    "refresh_search_text",
    "rename_file",
    "revoke_grant",
    "update_tags",
]

MAX_TAGS = 20
MAX_TAG = 40
_TAG = re.compile(r"[^\W_][\w .-]*", re.UNICODE)


def normalize_tag(tag: str) -> str:
    cleaned = " ".join(tag.split()).lower()
    if not cleaned or len(cleaned) > MAX_TAG or not _TAG.fullmatch(cleaned):
        raise ValidationFailed(
            "invalid_tag",
            f"A tag has 1 to {MAX_TAG} letters, digits, spaces, '-', '_' or '.'",
            details={"tag": tag[:100]},
        )
    return cleaned


def normalize_tags(tags: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        seen.setdefault(normalize_tag(tag), None)
    if len(seen) > MAX_TAGS:
        raise ValidationFailed("too_many_tags", f"A file has at most {MAX_TAGS} tags")
    return list(seen)


@dataclass(frozen=True)
class FileDetail:
    file: File
    current: FileVersion | None
    access: Literal["owner", "staff", "grant"]  # why the caller may read it


async def get_file(*, principal: Principal, file_id: UUID) -> FileDetail:
    file = await check_can_read(principal, file_id)
    current = await FileVersion.get_or_none(file_id=file.id, number=file.current_version)
    access: Literal["owner", "staff", "grant"] = "owner"
    if file.owner_id != principal.user_id:  # type: ignore[attr-defined]
        access = "staff" if may_read_any(principal) else "grant"
    return FileDetail(file=file, current=current, access=access)


async def list_files(
    *, principal: Principal, where: FileFilter, order: FileOrder, limit: int, offset: int
) -> FilePage:
    if where.folder_id is not None:
        # Grantees do not browse folders; they find their files with scope=shared.
        await check_folder_readable(principal, where.folder_id)
    return await find_files(
        principal=principal, where=where, order=order, limit=limit, offset=offset
    )


async def _current_facts(file: File) -> dict[str, object]:
    version = await FileVersion.get_or_none(file_id=file.id, number=file.current_version)
    return dict(version.metadata) if version is not None else {}


async def _save_with_search(file: File, fields: list[str]) -> None:
    file.search_text = build_search_text(
        name=file.name, tags=file.tags, kind=file.kind, facts=await _current_facts(file)
    )
    await file.save(update_fields=[*fields, "search_text", "updated_at"])


async def refresh_search_text(file_id: UUID) -> None:
    """Recompute a file's search text, e.g. after the render farm filled in its version's
    metadata."""
    file = await File.get_or_none(id=file_id)
    if file is not None:
        await _save_with_search(file, [])


async def rename_file(*, principal: Principal, file_id: UUID, name: str) -> File:
    name = check_name(name)
    file = await check_can_write(principal, file_id)
    file.name = name
    await _save_with_search(file, ["name"])
    return file


async def move_file(*, principal: Principal, file_id: UUID, folder_id: UUID | None) -> File:
    """Move into one of the owner's folders (None: the owner's root)."""
    file = await check_can_write(principal, file_id)
    if folder_id is not None:
        owner = file.owner_id  # type: ignore[attr-defined]
        if not await Folder.exists(id=folder_id, owner_id=owner):
            raise folder_not_found()
    file.folder_id = folder_id
    await file.save(update_fields=["folder_id", "updated_at"])
    return file


async def update_tags(
    *,
    principal: Principal,
    file_id: UUID,
    replace: list[str] | None = None,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> File:
    """Replace the tags (`replace`), or add and remove some; the file row is locked meanwhile,
    so concurrent changes do not lose each other's tags."""
    replacing = normalize_tags(replace) if replace is not None else None
    adding = normalize_tags(add)
    removing = set(normalize_tags(remove))
    async with in_transaction():
        await check_can_write(principal, file_id)
        file = await File.filter(id=file_id).select_for_update().get()
        base = replacing if replacing is not None else list(file.tags)
        result = normalize_tags([*base, *adding])
        file.tags = [t for t in result if t not in removing]
        await _save_with_search(file, ["tags"])
    return file


async def delete_file(*, principal: Principal, file_id: UUID) -> None:
    """Soft delete: the file disappears for everyone; rows and blobs stay."""
    file = await check_can_write(principal, file_id)
    updated = await File.filter(id=file.id, deleted_at=None).update(deleted_at=utcnow())
    if not updated:
        raise file_not_found()


# -- grants ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    user_id: UUID
    email: str
    granted_by_id: UUID | None
    created_at: datetime
    file_name: str = ""
    new: bool = False  # made by this call (not an idempotent repeat): worth telling the user


async def _grant_view(row: FileGrant) -> Grant:
    user = await User.get(id=row.user_id)  # type: ignore[attr-defined]
    return Grant(
        user_id=user.id,
        email=user.email,
        granted_by_id=row.granted_by_id,  # type: ignore[attr-defined]
        created_at=row.created_at,
    )


async def grant_file(
    *, principal: Principal, file_id: UUID, user_id: UUID | None, email: str | None
) -> Grant:
    """Give another user read access. Idempotent: granting twice keeps one grant."""
    file = await check_can_write(principal, file_id)
    if (user_id is None) == (email is None):
        raise ValidationFailed("user_or_email", "Give exactly one of user_id and email")
    if user_id is not None:
        user = await User.get_or_none(id=user_id, is_active=True)
    else:
        user = await User.get_or_none(email=(email or "").strip().lower(), is_active=True)
    if user is None:
        raise NotFound("user_not_found", "No such user")
    if user.id == file.owner_id:  # type: ignore[attr-defined]
        raise ValidationFailed("grant_to_owner", "The owner has access already")
    row = await FileGrant.get_or_none(file_id=file.id, user_id=user.id)
    new = False
    if row is None:
        try:
            row = await FileGrant.create(file=file, user=user, granted_by_id=principal.user_id)
            new = True
        except IntegrityError:
            row = await FileGrant.get(file_id=file.id, user_id=user.id)
    view = await _grant_view(row)
    return replace(view, file_name=file.name, new=new)


async def list_grants(*, principal: Principal, file_id: UUID) -> list[Grant]:
    file = await check_can_write(principal, file_id)
    rows = await FileGrant.filter(file_id=file.id).order_by("created_at", "id")
    return [await _grant_view(row) for row in rows]


async def revoke_grant(*, principal: Principal, file_id: UUID, user_id: UUID) -> None:
    file = await check_can_write(principal, file_id)
    deleted = await FileGrant.filter(file_id=file.id, user_id=user_id).delete()
    if not deleted:
        raise NotFound("grant_not_found", "No such grant")
