"""Blobs in S3 (or an S3-compatible server) through aiobotocore.

Objects are named `<prefix><sha256>`. An upload's bytes are spooled to a temporary file until a
part (>= 5 MiB, S3's minimum for every part but the last) is full, then sent as one part of a
multipart upload to a temporary key, `<prefix>.uploads/<id>`. On completion that object is
copied on the server to its content key (nothing is sent twice over the network) and removed;
a blob smaller than one part is sent with a single PUT straight to its content key.

Endpoint, region and credentials come from the standard AWS settings (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...) which botocore reads itself; tests pass them explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from storage.blobs.base import (
    READ_SIZE,
    BlobNotFoundError,
    BlobStore,
    StoredBlob,
    UploadClosedError,
    UploadHandle,
    check_key,
    content_disposition,
)

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
MAX_COPY_SIZE = 5 * 1024**3  # CopyObject's limit; larger objects are copied in parts
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(eq=False)
class S3Upload(UploadHandle):
    spool: Path = Path()
    part_size: int = MIN_PART_SIZE
    spooled: int = 0  # bytes in the spool file, not yet sent
    temp_key: str = ""
    multipart_id: str | None = None
    parts: list[CompletedPartTypeDef] = field(default_factory=list)


class S3BlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = 8 * 1024 * 1024,
        copy_threshold: int = MAX_COPY_SIZE,
        spool_dir: Path | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.copy_threshold = copy_threshold
        self.spool_dir = spool_dir
        self._client_options = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._exit_stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None

    async def start(self) -> None:
        session = get_session()
        options = {k: v for k, v in self._client_options.items() if v is not None}
        options.setdefault("region_name", session.get_config_variable("region") or "us-east-1")
        config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"})
        self._client = await self._exit_stack.enter_async_context(
            session.create_client("s3", config=config, **options)  # type: ignore[call-overload]
        )

    async def close(self) -> None:
        self._client = None
        await self._exit_stack.aclose()

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3BlobStore is not started: use `async with store:`")
        return self._client

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # Uploads

    async def begin_upload(self, *, size_hint: int | None = None) -> S3Upload:
        handle = S3Upload()
        # S3 takes at most 10,000 parts: a known large size gets larger parts.
        handle.part_size = max(self.part_size, -(-(size_hint or 0) // MAX_PARTS))
        handle.temp_key = f"{self.prefix}.uploads/{handle.upload_id}"
        handle.spool = Path(await asyncio.to_thread(self._make_spool))
        return handle

    def _make_spool(self) -> str:
        fd, name = tempfile.mkstemp(prefix="blob-part-", dir=self.spool_dir)
        os.close(fd)
        return name

    def _own(self, handle: UploadHandle) -> S3Upload:
        if not isinstance(handle, S3Upload) or not handle.temp_key.startswith(self.prefix):
            raise UploadClosedError(f"upload {handle.upload_id} is not one of this store's")
        return handle

    async def _write(self, handle: UploadHandle, data: bytearray) -> None:
        upload = self._own(handle)
        await asyncio.to_thread(_spool_append, upload, data)
        upload.spooled += len(data)
        if upload.spooled >= upload.part_size:
            await self._send_part(upload)

    async def _send_part(self, upload: S3Upload) -> None:
        """Send the spool file as the next part and empty it. Memory: one part."""
        if upload.multipart_id is None:
            created = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=upload.temp_key
            )
            upload.multipart_id = created["UploadId"]
        body = await asyncio.to_thread(_spool_read, upload)
        number = len(upload.parts) + 1
        sent = await self.client.upload_part(
            Bucket=self.bucket,
            Key=upload.temp_key,
            UploadId=upload.multipart_id,
            PartNumber=number,
            Body=body,
        )
        upload.parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        await asyncio.to_thread(_spool_clear, upload)
        upload.spooled = 0

    async def complete(self, handle: UploadHandle) -> StoredBlob:
        upload = self._own(handle)
        self._check_open(upload)
        key = upload.digest.hexdigest()
        target = self.object_key(key)
        try:
            if upload.multipart_id is None:  # smaller than one part: one PUT
                if not await self._object_exists(target):
                    body = await asyncio.to_thread(_spool_read, upload)
                    await self.client.put_object(Bucket=self.bucket, Key=target, Body=body)
            elif await self._object_exists(target):  # stored already: drop the parts
                await self.abort(upload)
            else:
                if upload.spooled:
                    await self._send_part(upload)
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=upload.temp_key,
                    UploadId=upload.multipart_id,
                    MultipartUpload={"Parts": upload.parts},
                )
                upload.multipart_id = None
                try:
                    if not await self._object_exists(target):
                        await self._copy(upload.temp_key, target, upload.size)
                finally:
                    await asyncio.shield(
                        self.client.delete_object(Bucket=self.bucket, Key=upload.temp_key)
                    )
        except BaseException:
            await asyncio.shield(self.abort(upload))
            raise
        upload.closed = True
        await asyncio.to_thread(upload.spool.unlink, missing_ok=True)
        return StoredBlob(key=key, size=upload.size)

    async def _copy(self, source: str, target: str, size: int) -> None:
        if size <= self.copy_threshold:
            await self.client.copy_object(
                Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
            )
            return
        part = max(self.part_size, -(-size // MAX_PARTS))
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
        upload_id = created["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                copied = await self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await asyncio.shield(
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id
                )
            )
            raise

    async def abort(self, handle: UploadHandle) -> None:
        upload = self._own(handle)
        upload.closed = True
        upload.pending.clear()
        try:
            if upload.multipart_id is not None:
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.temp_key, UploadId=upload.multipart_id
                )
                upload.multipart_id = None
        finally:
            await asyncio.to_thread(upload.spool.unlink, missing_ok=True)

    # Reads

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _is_not_found(exc):
                raise BlobNotFoundError(key) from None
            raise
        return _read_body(response["Body"])

    async def exists(self, key: str) -> bool:
        return await self._object_exists(self.object_key(key))

    async def _object_exists(self, object_key: str) -> bool:
        try:
            await self.client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def url(self, key: str, *, expires: int, filename: str | None = None) -> str | None:
        return await self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.object_key(key),
                "ResponseContentDisposition": content_disposition(filename),
            },
            ExpiresIn=expires,
        )


async def _read_body(body: StreamingBody) -> AsyncGenerator[bytes, None]:
    async with body:
        async for chunk in body.iter_chunks(READ_SIZE):
            yield chunk


def _spool_append(upload: S3Upload, data: bytearray) -> None:
    with upload.spool.open("ab") as file:
        file.write(data)
    upload.digest.update(data)


def _spool_read(upload: S3Upload) -> bytes:
    """The spool file's bytes: at most one part plus one batch."""
    return upload.spool.read_bytes()


def _spool_clear(upload: S3Upload) -> None:
    with upload.spool.open("rb+") as file:
        file.truncate(0)


def _is_not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES
