"""The values the tus service hands out and the seam it finishes uploads through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from core.principal import Principal
from db.models.files import Upload, UploadKind, UploadState
from storage.blobs import StoredBlob
from storage.tus_protocol import InvalidTusHeader


@dataclass(frozen=True)
class FinishedFile:
    file_id: UUID
    version_id: UUID
    version: int


class UploadFinisher(Protocol):
    """Turns a completed blob into a file version (the real one: `storage.upload_finish`)."""

    async def check_target(
        self, *, principal: Principal, folder_id: UUID | None, file_id: UUID | None
    ) -> None:
        """Raise an AppError (e.g. 404 `file_not_found`) if the caller may not upload there."""

    async def finish(self, *, upload: Upload, blob: StoredBlob) -> FinishedFile:
        """Make the version; an AppError refuses the file (type mismatch, zip bomb...)."""


@dataclass(frozen=True)
class UploadView:
    id: UUID
    kind: UploadKind
    state: UploadState
    offset: int
    length: int | None
    metadata: dict[str, str]
    parts: tuple[UUID, ...]
    expires_at: datetime | None  # None once the upload is finished
    error_code: str
    file: FinishedFile | None


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    temp_budget_bytes: int
    expiry_seconds: int


def target_of(metadata: dict[str, str]) -> tuple[UUID | None, UUID | None]:
    """`folder_id` and `file_id` from the metadata (at most one of them)."""
    found: list[UUID | None] = []
    for name in ("folder_id", "file_id"):
        value = metadata.get(name)
        try:
            found.append(UUID(value) if value else None)
        except ValueError:
            raise InvalidTusHeader("invalid_metadata", f"{name} is not a UUID") from None
    folder_id, file_id = found
    if folder_id is not None and file_id is not None:
        raise InvalidTusHeader("invalid_metadata", "Give folder_id or file_id, not both")
    return folder_id, file_id
