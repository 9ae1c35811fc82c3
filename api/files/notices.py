"""What people are told about files: a user a file was shared with gets a `file.shared`
notification (inbox first; then push and email as their preferences say)."""

from __future__ import annotations

from uuid import UUID

from db.models.identity import User
from hub.notify import Inbox
from storage.documents import Grant


async def tell_grantee(*, inbox: Inbox, grant: Grant, file_id: UUID) -> None:
    sharer = await User.get_or_none(id=grant.granted_by_id) if grant.granted_by_id else None
    who = (sharer.display_name or sharer.email) if sharer is not None else "Someone"
    await inbox.create(
        user_id=grant.user_id,
        type="file.shared",
        title=f"{who} shared {grant.file_name} with you",
        body=grant.file_name,
        link=f"/files/{file_id}",
        data={"file_id": str(file_id), "shared_by": str(grant.granted_by_id or "")},
    )
