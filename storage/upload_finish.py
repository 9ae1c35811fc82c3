"""The end of a tus upload: the completed blob is typed (`storage.inspect`) and becomes a new
file or a new version of one (`storage.documents`). The `UploadFinisher` of `storage.tus`."""

from __future__ import annotations

from uuid import UUID

from core.bus import EventBus
from core.principal import Principal
from db.models.files import Folder, ScanStatus, Upload
from storage.blobs import BlobStore, StoredBlob
from storage.documents import add_uploaded_version, check_can_write
from storage.file_access import folder_not_found
from storage.inspect import inspect_blob
from storage.tus_types import FinishedFile, target_of


class DocumentFinisher:
    def __init__(self, *, store: BlobStore, bus: EventBus, scanning: bool) -> None:
        self.store = store
        self.bus = bus
        self.scanning = scanning  # False: versions are created `unscanned` (no clamd)

    async def check_target(
        self, *, principal: Principal, folder_id: UUID | None, file_id: UUID | None
    ) -> None:
        if file_id is not None:
            await check_can_write(principal, file_id)
        if folder_id is not None and not await Folder.exists(
            id=folder_id, owner_id=principal.user_id
        ):
            raise folder_not_found()

    async def finish(self, *, upload: Upload, blob: StoredBlob) -> FinishedFile:
        folder_id, file_id = target_of(upload.metadata)
        filename = upload.metadata.get("filename") or "upload"
        info = await inspect_blob(
            store=self.store,
            key=blob.key,
            size=blob.size,
            filename=filename,
            claimed_type=upload.metadata.get("filetype") or None,
        )
        version = await add_uploaded_version(
            owner_id=upload.owner_id,  # type: ignore[attr-defined]
            blob=blob,
            filename=filename,
            mime_type=info.mime_type,
            kind=info.kind,
            folder_id=folder_id,
            file_id=file_id,
            scan_status=ScanStatus.PENDING if self.scanning else ScanStatus.UNSCANNED,
            type_facts=info.facts,
            upload_id=upload.id,
            bus=self.bus,
        )
        return FinishedFile(
            file_id=version.file_id,  # type: ignore[attr-defined]
            version_id=version.id,
            version=version.number,
        )
