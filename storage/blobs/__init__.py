"""Blob storage: the `BlobStore` seam and its local-disk and S3 backends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from storage.blobs.base import (
    BlobError,
    BlobNotFoundError,
    BlobStore,
    InvalidKeyError,
    StoredBlob,
    UploadClosedError,
    UploadHandle,
)

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "BlobError",
    "BlobNotFoundError",
    "BlobStore",
    "InvalidKeyError",
    "StoredBlob",
    "UploadClosedError",
    "UploadHandle",
    "create_blob_store",
]


def create_blob_store(settings: Settings) -> BlobStore:
    """The store STORAGE_URL names: `file://DIR` or `s3://BUCKET[/prefix]`. Open it with
    `async with` (S3 opens its client there); endpoint and credentials of S3 come from the
    standard AWS environment variables."""
    parts = urlsplit(settings.storage_url)
    if parts.scheme == "file":
        from storage.blobs.local import LocalBlobStore

        return LocalBlobStore(Path(parts.netloc + parts.path))
    if parts.scheme == "s3":
        from storage.blobs.s3 import S3BlobStore  # imports botocore: only when used

        return S3BlobStore(parts.netloc, parts.path)
    raise ValueError(f"unsupported storage URL scheme: {parts.scheme!r}")
