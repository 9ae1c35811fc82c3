"""Blobs in S3 (or an S3-compatible server) through aiobotocore.

Objects are named `<prefix><sha256>`. An upload's bytes are spooled to a temporary file until a
part (>= 5 MiB, S3's minimum for every part but the last) is full, then sent as one part of a
multipart upload to a temporary key, `<prefix>.uploads/<id>`. On completion that object is
copied on the server to its content key (nothing is sent twice over the network) and removed;
a blob smaller than one part is sent with a single PUT straight to its content key.

Resuming after a restart (`resume_upload`): the multipart upload is found again by its temporary
key (ListMultipartUploads, ListParts give its id, parts and their sizes) and the bytes not yet
sent are in the spool file of the next part, `<spool dir>/blob-<id>.<part number>` (a spool file
per part: one whose part was sent is deleted after the part is, so a crash between the two
leaves nothing ambiguous). The running sha256 of the bytes already sent cannot be rebuilt
without reading them: such an upload is hashed on completion by streaming the assembled
temporary object back, before it is copied to its content key.

Endpoint, region and credentials come from the standard AWS settings (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...) which botocore reads itself; tests pass them explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from storage.blobs.base import (
    BATCH_SIZE,
    READ_SIZE,
    BlobNotFoundError,
    BlobStore,
    StoredBlob,
    UploadClosedError,
    UploadHandle,
    check_key,
    content_disposition,
)
from storage.blobs.s3_endpoints import use_endpoints_of

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
    spool: Path = Path()  # the spool file of the next part: `spool_base`.<part number>
    spool_base: Path = Path()
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
        use_endpoints_of(session, ["s3"])  # not every AWS service's: ~7 MB less RSS
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
        handle.spool_base = self._spool_base(handle.upload_id)
        handle.spool = _spool_path(handle, 1)
        await asyncio.to_thread(handle.spool.touch)
        return handle

    def _spool_base(self, upload_id: str) -> Path:
        return Path(self.spool_dir or tempfile.gettempdir()) / f"blob-{upload_id}"

    def export_state(self, handle: UploadHandle) -> dict[str, Any]:
        upload = self._own(handle)
        return {
            "upload_id": upload.upload_id,
            "temp_key": upload.temp_key,
            "part_size": upload.part_size,
            "spool_base": str(upload.spool_base),
            "size": upload.size,
        }

    def _state_key(self, state: dict[str, Any]) -> tuple[str, str]:
        upload_id = str(state.get("upload_id", ""))
        temp_key = f"{self.prefix}.uploads/{upload_id}"
        if not upload_id.isalnum() or state.get("temp_key") != temp_key:
            raise UploadClosedError(f"not an upload of this store: {upload_id!r}")
        return upload_id, temp_key

    async def resume_upload(self, state: dict[str, Any]) -> S3Upload:
        upload_id, temp_key = self._state_key(state)
        handle = S3Upload(upload_id=upload_id, temp_key=temp_key)
        handle.part_size = max(int(state.get("part_size", self.part_size)), MIN_PART_SIZE)
        handle.spool_base = Path(str(state.get("spool_base") or self._spool_base(upload_id)))
        multipart_ids = await self._multipart_ids(temp_key)
        sent = 0
        if multipart_ids:
            handle.multipart_id = multipart_ids[0]
            for extra in multipart_ids[1:]:  # cannot happen unless two processes raced
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=temp_key, UploadId=extra
                )
            for number, etag, size in await self._list_parts(temp_key, handle.multipart_id):
                if number != len(handle.parts) + 1:
                    break  # parts are sent in order: a gap means what follows is not ours
                handle.parts.append({"PartNumber": number, "ETag": etag})
                sent += size
        stale = _spool_path(handle, len(handle.parts))
        handle.spool = _spool_path(handle, len(handle.parts) + 1)
        handle.spooled = await asyncio.to_thread(_resume_spool, handle, stale)
        handle.size = sent + handle.spooled
        handle.digest_valid = not handle.parts  # the spool alone was hashed again
        return handle

    async def _multipart_ids(self, temp_key: str) -> list[str]:
        listed = await self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=temp_key)
        uploads = [u for u in listed.get("Uploads", []) if u.get("Key") == temp_key]
        uploads.sort(key=lambda u: u["Initiated"])
        return [u["UploadId"] for u in uploads]

    async def _list_parts(self, temp_key: str, multipart_id: str) -> list[tuple[int, str, int]]:
        found: list[tuple[int, str, int]] = []
        marker = 0
        while True:
            listed = await self.client.list_parts(
                Bucket=self.bucket, Key=temp_key, UploadId=multipart_id, PartNumberMarker=marker
            )
            found.extend((p["PartNumber"], p["ETag"], p["Size"]) for p in listed.get("Parts", []))
            if not listed.get("IsTruncated"):
                return sorted(found)
            marker = listed["NextPartNumberMarker"]

    async def discard_upload(self, state: dict[str, Any]) -> None:
        upload_id, temp_key = self._state_key(state)
        for multipart_id in await self._multipart_ids(temp_key):
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=temp_key, UploadId=multipart_id
            )
        base = Path(str(state.get("spool_base") or self._spool_base(upload_id)))
        await asyncio.to_thread(_remove_spools, base)

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
        # The part goes out from its spool file, not from a bytes copy: memory stays a few
        # reads deep however large the part (aiohttp reads file bodies in a worker thread;
        # over plain http botocore also hashes the payload for SigV4, on the loop, as it does
        # for bytes; https S3 sends it unsigned with a streamed checksum).
        body = await asyncio.to_thread(upload.spool.open, "rb")
        number = len(upload.parts) + 1
        try:
            sent = await self.client.upload_part(
                Bucket=self.bucket,
                Key=upload.temp_key,
                UploadId=upload.multipart_id,
                PartNumber=number,
                Body=body,
                ContentLength=upload.spooled,
            )
        finally:
            await asyncio.to_thread(body.close)
        upload.parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        done, upload.spool = upload.spool, _spool_path(upload, number + 1)
        await asyncio.to_thread(_spool_next, done, upload.spool)
        upload.spooled = 0

    async def complete(self, handle: UploadHandle) -> StoredBlob:
        upload = self._own(handle)
        self._check_open(upload)
        if not upload.digest_valid:
            return await self._complete_resumed(upload)
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
                await self._assemble(upload, key)
        except BaseException:
            await asyncio.shield(self.abort(upload))
            raise
        upload.closed = True
        await asyncio.to_thread(upload.spool.unlink, missing_ok=True)
        return StoredBlob(key=key, size=upload.size)

    async def _complete_resumed(self, upload: S3Upload) -> StoredBlob:
        """Complete an upload whose earlier parts were sent by another process: assemble the
        temporary object, hash it by streaming it back (in bounded memory, hashing in a
        thread), then copy it to its content key."""
        try:
            if upload.spooled or not upload.parts:
                await self._send_part(upload)
            key = await self._assemble(upload, None)
        except BaseException:
            await asyncio.shield(self.abort(upload))
            raise
        upload.closed = True
        await asyncio.to_thread(upload.spool.unlink, missing_ok=True)
        return StoredBlob(key=key, size=upload.size)

    async def _assemble(self, upload: S3Upload, key: str | None) -> str:
        """Complete the multipart upload into its temporary object, hash that object when
        `key` is not known (a resumed upload), copy it to its content key unless the content
        is stored already, and drop the temporary object. Returns the key."""
        if upload.multipart_id is None:
            raise UploadClosedError(f"upload {upload.upload_id} has no multipart upload")
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=upload.temp_key,
            UploadId=upload.multipart_id,
            MultipartUpload={"Parts": upload.parts},
        )
        upload.multipart_id = None
        try:
            if key is None:
                key = await self._hash_object(upload.temp_key)
            target = self.object_key(key)
            if not await self._object_exists(target):
                await self._copy(upload.temp_key, target, upload.size)
        finally:
            await asyncio.shield(self.client.delete_object(Bucket=self.bucket, Key=upload.temp_key))
        return key

    async def _hash_object(self, object_key: str) -> str:
        digest = hashlib.sha256()
        response = await self.client.get_object(Bucket=self.bucket, Key=object_key)
        batch = bytearray()
        async for chunk in _read_body(response["Body"]):
            batch += chunk
            if len(batch) >= BATCH_SIZE:
                await asyncio.to_thread(digest.update, bytes(batch))
                batch.clear()
        if batch:
            await asyncio.to_thread(digest.update, bytes(batch))
        return digest.hexdigest()

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


def _spool_path(upload: S3Upload, number: int) -> Path:
    return upload.spool_base.with_name(f"{upload.spool_base.name}.{number}")


def _spool_next(done: Path, following: Path) -> None:
    """The part in `done` was sent: start the next part's spool file, then drop the old one
    (in this order: a crash in between leaves the sent part's file, which a resume deletes)."""
    following.touch()
    done.unlink(missing_ok=True)


def _resume_spool(upload: S3Upload, stale: Path) -> int:
    """Delete the spool file of a part that was sent; hash the next part's spool (only useful
    when no part was sent yet); return its size."""
    if stale != upload.spool and stale.name != f"{upload.spool_base.name}.0":
        stale.unlink(missing_ok=True)
    upload.spool.touch()
    size = 0
    with upload.spool.open("rb") as file:
        while block := file.read(BATCH_SIZE):
            if not upload.parts:
                upload.digest.update(block)
            size += len(block)
    return size


def _remove_spools(base: Path) -> None:
    for path in base.parent.glob(f"{base.name}.*"):
        path.unlink(missing_ok=True)


def _is_not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES
