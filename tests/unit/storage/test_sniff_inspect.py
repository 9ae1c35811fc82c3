"""storage.inspect on the local store: the blob is read where it lies (S3, through a temporary
copy, is tested in tests/integration/test_scanning_s3.py)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.archives import UnsafeArchive
from storage.blobs.local import LocalBlobStore
from storage.inspect import FileTypeMismatch, TypeInfo, inspect_blob
from tests.blobs import stream
from tests.cad_samples import cad_sample


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    async with LocalBlobStore(tmp_path / "blobs") as store:
        yield store


async def test_a_local_blob_is_read_in_place(local: LocalBlobStore) -> None:
    data = cad_sample("angle_block.STL").read_bytes()
    blob = await local.put_stream(stream(data))

    info = await inspect_blob(
        store=local,
        key=blob.key,
        size=blob.size,
        filename="angle_block.STL",
        claimed_type="application/vnd.ms-pki.stl",
    )

    assert info == TypeInfo(
        kind="stl",
        mime_type="model/stl",
        facts={
            "encoding": "binary",
            "triangles": 704,
            "claimed_type": "application/vnd.ms-pki.stl",
        },
    )


async def test_refusals_come_through(local: LocalBlobStore) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root sh")
    archive_blob = await local.put_stream(stream(buffer.getvalue()))
    pdf = await local.put_stream(stream(b"%PDF-1.4\n%%EOF\n"))

    with pytest.raises(UnsafeArchive) as unsafe:
        await inspect_blob(
            store=local, key=archive_blob.key, size=0, filename="x.zip", claimed_type=None
        )
    with pytest.raises(FileTypeMismatch) as mismatch:
        await inspect_blob(store=local, key=pdf.key, size=0, filename="x.stl", claimed_type=None)

    assert (unsafe.value.status, unsafe.value.code) == (422, "archive_path_traversal")
    assert (mismatch.value.status, mismatch.value.code) == (415, "file_type_mismatch")
