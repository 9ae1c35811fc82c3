"""tus 1.0.0: the protocol's constants, its errors and the parsing of its headers.

Pure functions and error classes only; the upload service is in `storage.tus`, the routes in
`api.files.uploads`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from uuid import UUID

from core.errors import AppError, BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge

TUS_VERSION = "1.0.0"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
)
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
METADATA_KEYS = ("filename", "filetype", "folder_id", "file_id")


class UploadNotFound(NotFound):
    default_code = "upload_not_found"
    default_message = "No such upload"


class UploadGone(AppError):
    status = 410
    default_code = "upload_expired"
    default_message = "The upload expired or was removed"


class OffsetMismatch(Conflict):
    default_code = "offset_mismatch"
    default_message = "Upload-Offset does not match the upload's offset"


class UploadLocked(AppError):
    status = 423
    default_code = "upload_locked"
    default_message = "Another request is writing to this upload"


class UploadFinishedError(Conflict):
    default_code = "upload_finished"
    default_message = "The upload is finished: nothing more can be written to it"


class FinalUploadNotWritable(Forbidden):
    default_code = "upload_is_final"
    default_message = "A final (concatenated) upload takes no PATCH"


class UploadTooLarge(PayloadTooLarge):
    default_code = "upload_too_large"
    default_message = "The upload is larger than allowed"


class UploadBudgetExceeded(AppError):
    status = 507
    default_code = "upload_budget_exceeded"
    default_message = "The server holds too many unfinished uploads: try again later"


class ChecksumMismatch(AppError):
    status = 460
    default_code = "checksum_mismatch"
    default_message = "The body does not match Upload-Checksum"


class TusVersionUnsupported(AppError):
    status = 412
    default_code = "tus_version_unsupported"
    default_message = "Send Tus-Resumable: 1.0.0"

    @property
    def headers(self) -> dict[str, str]:
        return {"Tus-Version": TUS_VERSION}


class InvalidTusHeader(BadRequest):
    default_code = "invalid_tus_header"


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    def new_hash(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def check_tus_resumable(value: str | None) -> None:
    if value != TUS_VERSION:
        raise TusVersionUnsupported()


def parse_length(value: str | None, header: str) -> int | None:
    """A non-negative decimal header value, or None when absent."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise InvalidTusHeader(message=f"{header} must be a non-negative integer")
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent)."""
    if not value or not value.strip():
        return {}
    found: dict[str, str] = {}
    for pair in value.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key or " " in encoded.strip() or key in found:
            raise InvalidTusHeader("invalid_metadata", "Upload-Metadata is malformed")
        try:
            found[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidTusHeader(
                "invalid_metadata", f"Upload-Metadata value of {key!r} is not base64 UTF-8"
            ) from None
    return found


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
        for key, value in metadata.items()
    )


def parse_checksum(value: str | None) -> Checksum | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; an unknown algorithm is a 400."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidTusHeader(
            "checksum_algorithm_unsupported",
            f"Upload-Checksum algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}",
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidTusHeader(message="Upload-Checksum digest is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InvalidTusHeader(message="Upload-Checksum digest has the wrong length")
    return Checksum(algorithm=algorithm, digest=digest)


@dataclass(frozen=True)
class Concat:
    """`Upload-Concat`: `partial`, or `final;<url> <url>...` (the partial uploads' ids)."""

    partial: bool
    parts: tuple[UUID, ...] = ()


def parse_concat(value: str | None) -> Concat | None:
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return Concat(partial=True)
    kind, _, urls = value.partition(";")
    if kind != "final" or not urls.strip():
        raise InvalidTusHeader("invalid_concat", "Upload-Concat must be partial or final;<urls>")
    parts: list[UUID] = []
    for url in urls.split():
        try:
            parts.append(UUID(url.rstrip("/").rpartition("/")[2]))
        except ValueError:
            raise InvalidTusHeader("invalid_concat", f"Not an upload URL: {url!r}") from None
    return Concat(partial=False, parts=tuple(parts))
