"""Live support chat: the service behind the socket events (and the REST routes).

Messages are in the database before anyone hears of them. Numbering: the conversation row is
locked, its counter bumped and the message inserted in one transaction, so whichever hub node
takes a message, a conversation's messages are 1, 2, 3 ... with no gaps or repeats. `send` is
idempotent on (sender, client_msg_id): a retried send returns the stored message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from redis.exceptions import RedisError
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from core.bus import EventBus
from core.clock import utcnow
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.ids import new_id
from core.logs import get_logger
from core.permissions import Permission, Role, has_permission
from core.principal import Principal
from db.models.chat import (
    CannedReply,
    Conversation,
    ConversationStatus,
    Message,
    MessageKind,
    ReadState,
)
from db.models.files import File, FileGrant
from db.models.identity import User
from db.raw_sql import fetch_rows
from storage.file_access import readable_file_ids

HISTORY_LIMIT = 100
# What pub/sub (Redis) raises while it is away. Once a message is stored, telling others is
# best effort: the database is the log, and clients catch up with `sync`.
FANOUT_ERRORS = (RedisError, OSError)

log = get_logger(__name__)
MAX_ATTACHMENTS = 10
SYNC_LIMIT = 500


@dataclass(frozen=True, slots=True)
class MessageView:
    id: UUID
    conversation_id: UUID
    seq: int
    sender_id: UUID | None
    kind: MessageKind
    body: str
    attachments: list[dict[str, Any]]
    created_at: datetime
    client_msg_id: str | None

    @classmethod
    def of(cls, row: Message) -> MessageView:
        return cls(
            id=row.id,
            conversation_id=row.conversation_id,  # type: ignore[attr-defined]
            seq=row.seq,
            sender_id=row.sender_id,  # type: ignore[attr-defined]
            kind=row.kind,
            body=row.body,
            attachments=list(row.attachments),
            created_at=row.created_at,
            client_msg_id=row.client_msg_id,
        )

    def wire(self) -> dict[str, Any]:
        """As sent on the socket; bodies are plain text, escaped by whoever renders them."""
        return {
            "id": str(self.id),
            "conversation_id": str(self.conversation_id),
            "seq": self.seq,
            "sender_id": str(self.sender_id) if self.sender_id else None,
            "kind": self.kind.value,
            "body": self.body,
            "attachments": self.attachments,
            "created_at": self.created_at.isoformat(),
            "client_msg_id": self.client_msg_id,
        }


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: UUID
    customer_id: UUID
    assignee_id: UUID | None
    subject: str
    status: ConversationStatus
    last_seq: int
    created_at: datetime
    last_message_at: datetime | None

    @classmethod
    def of(cls, row: Conversation) -> ConversationView:
        return cls(
            id=row.id,
            customer_id=row.customer_id,  # type: ignore[attr-defined]
            assignee_id=row.assignee_id,  # type: ignore[attr-defined]
            subject=row.subject,
            status=row.status,
            last_seq=row.last_seq,
            created_at=row.created_at,
            last_message_at=row.last_message_at,
        )

    def wire(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "customer_id": str(self.customer_id),
            "assignee_id": str(self.assignee_id) if self.assignee_id else None,
            "subject": self.subject,
            "status": self.status.value,
            "last_seq": self.last_seq,
            "created_at": self.created_at.isoformat(),
            "last_message_at": self.last_message_at.isoformat() if self.last_message_at else None,
        }


@dataclass(frozen=True, slots=True)
class Sent:
    message: MessageView
    conversation: ConversationView
    created: bool  # False when a retried client_msg_id returned the stored message
    reopened: bool = False


@dataclass(frozen=True, slots=True)
class Replay:
    messages: list[MessageView]
    has_more: bool


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    conversation_id: UUID
    user_id: UUID
    seq: int


def may_read_any(principal: Principal) -> bool:
    return principal.can(Permission.CHAT_READ_ANY)


class ChatService:
    def __init__(self, *, bus: EventBus, max_body: int) -> None:
        self._bus = bus
        self._max_body = max_body

    # -- access -----------------------------------------------------------------------------

    async def conversation_for(self, principal: Principal, conversation_id: UUID) -> Conversation:
        """The conversation if the caller may see it; customers reach only their own (404
        for others', so ids of other customers' conversations are not even confirmed)."""
        row = await Conversation.get_or_none(id=conversation_id)
        if row is None or (
            row.customer_id != principal.user_id  # type: ignore[attr-defined]
            and not may_read_any(principal)
        ):
            raise NotFound("conversation_not_found", "No such conversation")
        return row

    def _check_body(self, body: str) -> str:
        if not body.strip():
            raise ValidationFailed("empty_message", "The message is empty")
        if len(body) > self._max_body:
            raise ValidationFailed(
                "message_too_long",
                f"A message may have at most {self._max_body} characters",
                details={"max": self._max_body},
            )
        return body

    # -- conversations -----------------------------------------------------------------------

    async def open(self, *, principal: Principal, subject: str) -> ConversationView:
        if principal.role is not Role.CUSTOMER:
            raise Forbidden("customers_only", "Only customers open support conversations")
        row = await Conversation.create(customer_id=principal.user_id, subject=subject.strip())
        view = ConversationView.of(row)
        await self._bus.emit(
            "chat.conversation_created",
            view.wire(),
            actor_id=str(principal.user_id),
            subject=f"conversation:{row.id}",
        )
        return view

    async def list_for(self, principal: Principal) -> list[ConversationView]:
        """The customer's own conversations, or those assigned to the staff member; newest
        first. One hand-written query (asked on every page load): Tortoise's query building
        and model hydration cost more CPU than the query."""
        connection = Conversation._meta.db
        column = "customer_id" if principal.role is Role.CUSTOMER else "assignee_id"
        rows = await fetch_rows(connection, _LIST_SQL[column], [principal.user_id])
        return [_conversation_of(row) for row in rows]

    async def queue(self, *, principal: Principal, limit: int = 100) -> list[ConversationView]:
        """Staff's queue: unassigned first, then the rest of the unresolved, oldest first."""
        if not may_read_any(principal):
            raise Forbidden("forbidden", "Staff only")
        rows = (
            await Conversation.exclude(status=ConversationStatus.RESOLVED)
            .order_by("created_at")
            .limit(limit * 2)
        )
        rows.sort(key=lambda r: (r.assignee_id is not None, r.created_at))  # type: ignore[attr-defined]
        return [ConversationView.of(r) for r in rows[:limit]]

    # -- messages ----------------------------------------------------------------------------

    async def send(
        self,
        *,
        principal: Principal,
        conversation_id: UUID,
        client_msg_id: str,
        body: str,
        attachments: Sequence[UUID] = (),
    ) -> Sent:
        """Store and number a message. `attachments` are ids of files the sender may read;
        the message keeps a snapshot of each (name, size, type, version), and the customer
        of the conversation is granted read access to files that are not theirs."""
        self._check_body(body)
        files: list[File] = []
        if attachments:
            # Look before checking files: a retried send gets its message back even if an
            # attachment has become unreadable since.
            await self.conversation_for(principal, conversation_id)
            existing = await self._by_client_id(conversation_id, principal.user_id, client_msg_id)
            if existing is not None:
                conversation = await Conversation.get(id=conversation_id)
                return Sent(
                    message=MessageView.of(existing),
                    conversation=ConversationView.of(conversation),
                    created=False,
                )
            files = await self._attachable(principal, attachments)
        # The plain message (the hot path) is one transaction: the access check on the locked
        # conversation row, the numbering and the insert; a retried client_msg_id hits the
        # unique constraint, the transaction rolls back (no seq is used) and the stored
        # message is returned below.
        try:
            sent = await self._insert(
                conversation_id=conversation_id,
                sender=principal,
                client_msg_id=client_msg_id,
                body=body,
                attachments=[_attachment(f) for f in files],
                shared_files=files,
                reader=principal,
            )
        except IntegrityError:
            # A retried client_msg_id (or one that raced in through another connection or node).
            stored = await self._by_client_id(conversation_id, principal.user_id, client_msg_id)
            if stored is None:
                raise
            conversation = await Conversation.get(id=conversation_id)
            return Sent(
                message=MessageView.of(stored),
                conversation=ConversationView.of(conversation),
                created=False,
            )
        try:
            await self._bus.emit(
                "chat.message_created",
                {
                    **sent.message.wire(),
                    "customer_id": str(sent.conversation.customer_id),
                    "assignee_id": str(sent.conversation.assignee_id)
                    if sent.conversation.assignee_id
                    else None,
                },
                actor_id=str(principal.user_id),
                subject=f"conversation:{conversation_id}",
            )
        except FANOUT_ERRORS as exc:  # stored: the news waits for sync, the send succeeded
            log.warning("chat.event_deferred", message_id=str(sent.message.id), error=str(exc))
        return sent

    async def _attachable(self, principal: Principal, file_ids: Sequence[UUID]) -> list[File]:
        """The files behind `file_ids`, in order, if the sender may read every one of them;
        otherwise `attachment_not_found` naming the others (nothing is written)."""
        wanted = list(dict.fromkeys(file_ids))
        if len(wanted) > MAX_ATTACHMENTS:
            raise ValidationFailed(
                "too_many_attachments", f"At most {MAX_ATTACHMENTS} attachments per message"
            )
        if not wanted:
            return []
        readable = await readable_file_ids(principal, wanted)
        missing = [str(i) for i in wanted if i not in readable]
        if missing:
            raise NotFound("attachment_not_found", "No such file", details={"file_ids": missing})
        rows = {f.id: f for f in await File.filter(id__in=wanted)}
        return [rows[i] for i in wanted]

    async def _by_client_id(
        self, conversation_id: UUID, sender_id: UUID, client_msg_id: str
    ) -> Message | None:
        return await Message.get_or_none(
            conversation_id=conversation_id, sender_id=sender_id, client_msg_id=client_msg_id
        )

    async def _insert(
        self,
        *,
        conversation_id: UUID,
        sender: Principal | None,
        client_msg_id: str | None,
        body: str,
        attachments: list[dict[str, Any]],
        kind: MessageKind = MessageKind.TEXT,
        shared_files: Sequence[File] = (),
        reader: Principal | None = None,
    ) -> Sent:
        """Number and store a message. With `reader`, the conversation must be one they may
        see (as `conversation_for`), checked on the locked row."""
        now = utcnow()
        connection = Conversation._meta.db
        plain = PlainMessage(
            conversation_id=conversation_id,
            sender_id=sender.user_id if sender else None,
            client_msg_id=client_msg_id,
            body=body,
            attachments=attachments,
            kind=kind,
            reader=reader,
            now=now,
        )
        if not shared_files and connection.capabilities.dialect == "postgres":
            return await _insert_in_one_statement(connection, plain)
        if (
            not shared_files
            and isinstance(connection, SqliteClient)
            and not isinstance(connection, TransactionalDBClient)
        ):
            return await _insert_in_one_sqlite_transaction(connection, plain)
        reopened = False
        async with in_transaction():
            found = await Conversation.filter(id=conversation_id).select_for_update().get_or_none()
            if found is None or (
                reader is not None
                and found.customer_id != reader.user_id  # type: ignore[attr-defined]
                and not may_read_any(reader)
            ):
                raise NotFound("conversation_not_found", "No such conversation")
            conversation = found
            conversation.last_seq += 1
            conversation.last_message_at = now
            fields = ["last_seq", "last_message_at", "updated_at"]
            customer_wrote = (
                sender is not None and sender.user_id == conversation.customer_id  # type: ignore[attr-defined]
            )
            if customer_wrote and conversation.status is ConversationStatus.RESOLVED:
                conversation.status = ConversationStatus.OPEN
                fields.append("status")
                reopened = True
            await conversation.save(update_fields=fields)
            row = await Message.create(
                conversation_id=conversation_id,
                seq=conversation.last_seq,
                sender_id=sender.user_id if sender else None,
                client_msg_id=client_msg_id,
                kind=kind,
                body=body,
                attachments=attachments,
            )
            customer_id = conversation.customer_id  # type: ignore[attr-defined]
            for file in shared_files:
                if file.owner_id != customer_id:  # type: ignore[attr-defined]
                    await FileGrant.get_or_create(
                        file_id=file.id,
                        user_id=customer_id,
                        defaults={"granted_by_id": sender.user_id if sender else None},
                    )
        return Sent(
            message=MessageView.of(row),
            conversation=ConversationView.of(conversation),
            created=True,
            reopened=reopened,
        )

    async def history(
        self,
        *,
        principal: Principal,
        conversation_id: UUID,
        before_seq: int | None,
        limit: int,
    ) -> Replay:
        """Older messages, for scrolling back: up to `limit` before `before_seq`, ascending."""
        await self.conversation_for(principal, conversation_id)
        limit = max(1, min(limit, HISTORY_LIMIT))
        query = Message.filter(conversation_id=conversation_id)
        if before_seq is not None:
            query = query.filter(seq__lt=before_seq)
        rows = await query.order_by("-seq").limit(limit + 1)
        page = list(reversed(rows[:limit]))
        return Replay(messages=[MessageView.of(r) for r in page], has_more=len(rows) > limit)

    async def after(
        self,
        *,
        principal: Principal,
        conversation_id: UUID,
        after_seq: int,
        limit: int = SYNC_LIMIT,
    ) -> Replay:
        """What a reconnecting client missed: messages after `after_seq`, in order."""
        await self.conversation_for(principal, conversation_id)
        rows = (
            await Message.filter(conversation_id=conversation_id, seq__gt=after_seq)
            .order_by("seq")
            .limit(limit + 1)
        )
        return Replay(
            messages=[MessageView.of(r) for r in rows[:limit]], has_more=len(rows) > limit
        )

    async def mark_read(
        self, *, principal: Principal, conversation_id: UUID, seq: int
    ) -> ReadReceipt:
        conversation = await self.conversation_for(principal, conversation_id)
        seq = max(0, min(seq, conversation.last_seq))
        state, _ = await ReadState.get_or_create(
            conversation_id=conversation_id, user_id=principal.user_id
        )
        if seq > state.last_read_seq:
            # Only forward: a late, lower receipt never moves the marker back.
            await ReadState.filter(id=state.id, last_read_seq__lt=seq).update(last_read_seq=seq)
            state.last_read_seq = seq
        return ReadReceipt(
            conversation_id=conversation_id, user_id=principal.user_id, seq=state.last_read_seq
        )

    async def read_states(self, conversation_id: UUID) -> list[ReadReceipt]:
        rows = await ReadState.filter(conversation_id=conversation_id)
        return [
            ReadReceipt(conversation_id=conversation_id, user_id=r.user_id, seq=r.last_read_seq)  # type: ignore[attr-defined]
            for r in rows
        ]

    # -- staff actions -----------------------------------------------------------------------

    async def assign(
        self, *, actor: Principal, conversation_id: UUID, assignee_id: UUID | None
    ) -> ConversationView:
        if not actor.can(Permission.CHAT_ASSIGN):
            raise Forbidden("forbidden", "You may not assign conversations")
        if assignee_id is not None:
            assignee = await User.get_or_none(id=assignee_id, is_active=True)
            if assignee is None or not has_permission(assignee.role, Permission.CHAT_ASSIGN):
                raise ValidationFailed("invalid_assignee", "Assign to an active staff member")
        row = await self.conversation_for(actor, conversation_id)
        previous = row.assignee_id  # type: ignore[attr-defined]
        if previous == assignee_id:
            return ConversationView.of(row)
        await Conversation.filter(id=conversation_id).update(assignee_id=assignee_id)
        text = "unassigned" if assignee_id is None else f"assigned to {assignee_id}"
        await self._insert(
            conversation_id=conversation_id,
            sender=None,
            client_msg_id=None,
            body=text,
            attachments=[],
            kind=MessageKind.SYSTEM,
        )
        row = await Conversation.get(id=conversation_id)
        view = ConversationView.of(row)
        await self._bus.emit(
            "chat.conversation_unassigned" if assignee_id is None else "chat.conversation_assigned",
            {**view.wire(), "previous_assignee_id": str(previous) if previous else None},
            actor_id=str(actor.user_id),
            subject=f"conversation:{conversation_id}",
        )
        return view

    async def pick_assignee(self, *, candidates: list[UUID]) -> UUID | None:
        """Round-robin among eligible online staff: the one with the fewest unresolved
        conversations, ties to the one assigned longest ago."""
        if not candidates:
            return None
        eligible = [
            u.id
            for u in await User.filter(id__in=candidates, is_active=True)
            if has_permission(u.role, Permission.CHAT_ASSIGN)
        ]
        if not eligible:
            return None
        loads = {
            row["assignee_id"]: row["n"]
            for row in await Conversation.filter(assignee_id__in=eligible)
            .exclude(status=ConversationStatus.RESOLVED)
            .annotate(n=Count("id"))
            .group_by("assignee_id")
            .values("assignee_id", "n")
        }
        latest: dict[Any, datetime] = {}
        for row in await Conversation.filter(assignee_id__in=eligible).values(
            "assignee_id", "updated_at"
        ):
            current = latest.get(row["assignee_id"])
            if current is None or row["updated_at"] > current:
                latest[row["assignee_id"]] = row["updated_at"]
        epoch = datetime.min.replace(tzinfo=utcnow().tzinfo)
        return min(eligible, key=lambda u: (loads.get(u, 0), latest.get(u, epoch), str(u)))

    async def set_status(
        self, *, actor: Principal, conversation_id: UUID, status: ConversationStatus
    ) -> ConversationView:
        row = await self.conversation_for(actor, conversation_id)
        is_customer = row.customer_id == actor.user_id  # type: ignore[attr-defined]
        if not (may_read_any(actor) or (is_customer and status is ConversationStatus.RESOLVED)):
            raise Forbidden("forbidden", "You may not change this conversation's status")
        if row.status is not status:
            row.status = status
            await row.save(update_fields=["status", "updated_at"])
            await self._insert(
                conversation_id=conversation_id,
                sender=None,
                client_msg_id=None,
                body=f"status {status.value}",
                attachments=[],
                kind=MessageKind.SYSTEM,
            )
            row = await Conversation.get(id=conversation_id)
        return ConversationView.of(row)

    async def add_canned_reply(
        self, *, principal: Principal, shortcut: str, title: str, body: str
    ) -> CannedReply:
        if not principal.can(Permission.CHAT_ASSIGN):
            raise Forbidden("forbidden", "Staff only")
        try:
            return await CannedReply.create(
                shortcut=shortcut, title=title, body=body, created_by_id=principal.user_id
            )
        except IntegrityError:
            raise Conflict("shortcut_taken", "A canned reply has this shortcut") from None

    async def canned_replies(self, *, principal: Principal, query: str = "") -> list[CannedReply]:
        if not may_read_any(principal):
            raise Forbidden("forbidden", "Staff only")
        rows = CannedReply.all()
        if query:
            rows = rows.filter(Q(shortcut__icontains=query) | Q(title__icontains=query))
        return await rows.order_by("shortcut").limit(50)


@dataclass(frozen=True, slots=True)
class PlainMessage:
    """A message that shares no files: what the one-statement (PostgreSQL) and one-hop
    (SQLite) paths store."""

    conversation_id: UUID
    sender_id: UUID | None
    client_msg_id: str | None
    body: str
    attachments: list[dict[str, Any]]
    kind: MessageKind
    reader: Principal | None
    now: datetime

    def sent(
        self, message_id: UUID, conversation: ConversationView, *, previous_status: str
    ) -> Sent:
        """The stored message as `send` reports it: numbered `conversation.last_seq`."""
        return Sent(
            message=MessageView(
                id=message_id,
                conversation_id=self.conversation_id,
                seq=conversation.last_seq,
                sender_id=self.sender_id,
                kind=self.kind,
                body=self.body,
                attachments=list(self.attachments),
                created_at=self.now,
                client_msg_id=self.client_msg_id,
            ),
            conversation=conversation,
            created=True,
            reopened=conversation.status is not ConversationStatus(previous_status),
        )


_LIST_SELECT = (
    'SELECT "id", "customer_id", "assignee_id", "subject", "status", "last_seq", "created_at", '
    '"last_message_at" FROM "conversations" '
)
_LIST_SQL = {
    "customer_id": _LIST_SELECT + 'WHERE "customer_id" = $1 ORDER BY "created_at" DESC',
    "assignee_id": _LIST_SELECT + 'WHERE "assignee_id" = $1 ORDER BY "created_at" DESC',
}


def _uuid(value: Any) -> UUID:
    """asyncpg returns UUIDs, SQLite the text Tortoise wrote."""
    return value if isinstance(value, UUID) else UUID(value)


def _conversation_of(row: Any) -> ConversationView:
    """A `_LIST_SELECT` row, read as Tortoise would (its datetime conversion included)."""
    when = Conversation._meta.fields_map["created_at"].to_python_value
    return ConversationView(
        id=_uuid(row[0]),
        customer_id=_uuid(row[1]),
        assignee_id=None if row[2] is None else _uuid(row[2]),
        subject=row[3],
        status=ConversationStatus(row[4]),
        last_seq=row[5],
        created_at=when(row[6]),
        last_message_at=when(row[7]),
    )


# The plain message on PostgreSQL, in one statement (one round trip instead of five: begin,
# lock, update, insert, commit): lock the conversation row (`locked` keeps the status it had,
# to tell a reopening), take the next number under that lock, reopen it if its customer wrote
# and insert the message. A statement is atomic: a duplicate client_msg_id fails the insert,
# the whole statement rolls back and no number is used. Under READ COMMITTED a concurrent
# sender waits for the row lock and then reads the committed counter, so numbers stay
# 1, 2, 3 ... without gaps or repeats. No row comes back when the conversation does not
# exist or `$4` (a reader, NULL for none) may not see it and `$5` (may read any) is false.
_SEND_SQL = """
WITH locked AS (
    SELECT "id", "status" FROM "conversations" WHERE "id" = $1 FOR UPDATE
), bumped AS (
    UPDATE "conversations" AS c SET
        "last_seq" = c."last_seq" + 1,
        "last_message_at" = $2,
        "updated_at" = $2,
        "status" = CASE WHEN c."customer_id" = $3::uuid AND c."status" = $11
                   THEN $12 ELSE c."status" END
    FROM locked
    WHERE c."id" = locked."id" AND (c."customer_id" = $4::uuid OR $5::boolean)
    RETURNING c."id", c."customer_id", c."assignee_id", c."subject", c."status",
              c."last_seq", c."created_at", c."last_message_at",
              locked."status" AS "previous_status"
), inserted AS (
    INSERT INTO "messages" ("id", "conversation_id", "seq", "sender_id",
        "client_msg_id", "kind", "body", "attachments", "created_at")
    SELECT $6, bumped."id", bumped."last_seq", $3::uuid, $7, $8, $9, $10, $2 FROM bumped
)
SELECT * FROM bumped
"""


async def _insert_in_one_statement(connection: BaseDBAsyncClient, plain: PlainMessage) -> Sent:
    """`ChatService._insert` for a message that shares no files, on PostgreSQL."""
    message_id = new_id()
    reader = plain.reader
    _, rows = await connection.execute_query(
        _SEND_SQL,
        [
            plain.conversation_id,
            plain.now,
            plain.sender_id,
            reader.user_id if reader is not None else None,
            reader is None or may_read_any(reader),
            message_id,
            plain.client_msg_id,
            plain.kind.value,
            plain.body,
            Message._meta.fields_map["attachments"].to_db_value(plain.attachments, Message),
            ConversationStatus.RESOLVED.value,
            ConversationStatus.OPEN.value,
        ],
    )
    if not rows:
        raise NotFound("conversation_not_found", "No such conversation")
    row = rows[0]
    conversation = ConversationView(
        id=row["id"],
        customer_id=row["customer_id"],
        assignee_id=row["assignee_id"],
        subject=row["subject"],
        status=ConversationStatus(row["status"]),
        last_seq=row["last_seq"],
        created_at=row["created_at"],
        last_message_at=row["last_message_at"],
    )
    return plain.sent(message_id, conversation, previous_status=row["previous_status"])


# The plain message on embedded SQLite, as `_SEND_SQL` is on PostgreSQL: one write transaction
# (`BEGIN IMMEDIATE` takes the database's write lock at once, so no other writer, in this
# process or another, can slip between the read of the counter and its bump), run as one job
# on aiosqlite's worker thread: one hop from the event loop instead of six through Tortoise
# (its begin's commit and BEGIN, the select, the update, the insert, the commit). Tortoise's
# connection lock is held meanwhile, so no other query of this process runs inside the
# transaction. A duplicate client_msg_id fails the insert, the transaction rolls back and no
# number is used. A send inside an open Tortoise transaction keeps the ORM path.
_SQLITE_PREVIOUS_SQL = (
    'SELECT "status" FROM "conversations" WHERE "id" = ? AND ("customer_id" = ? OR ?)'
)
_SQLITE_BUMP_SQL = """
UPDATE "conversations" SET
    "last_seq" = "last_seq" + 1,
    "last_message_at" = ?,
    "updated_at" = ?,
    "status" = CASE WHEN "customer_id" = ? AND "status" = ? THEN ? ELSE "status" END
WHERE "id" = ?
RETURNING "id", "customer_id", "assignee_id", "subject", "status", "last_seq", "created_at",
          "last_message_at"
"""
_SQLITE_INSERT_SQL = (
    'INSERT INTO "messages" ("id", "conversation_id", "seq", "sender_id", "client_msg_id", '
    '"kind", "body", "attachments", "created_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'
)


def _send_in_sqlite(
    db: sqlite3.Connection,
    previous_args: tuple[Any, ...],
    bump_args: tuple[Any, ...],
    insert_args: tuple[Any, ...],
) -> tuple[str, sqlite3.Row] | None:
    """On aiosqlite's thread: the previous status and the bumped conversation row, or None
    (nothing written) when the conversation is missing or hidden from the reader."""
    db.execute("BEGIN IMMEDIATE")
    try:
        found = db.execute(_SQLITE_PREVIOUS_SQL, previous_args).fetchone()
        if found is None:
            db.execute("ROLLBACK")
            return None
        bumped: sqlite3.Row = db.execute(_SQLITE_BUMP_SQL, bump_args).fetchone()
        db.execute(_SQLITE_INSERT_SQL, (*insert_args[:2], bumped["last_seq"], *insert_args[2:]))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return str(found["status"]), bumped


async def _insert_in_one_sqlite_transaction(connection: SqliteClient, plain: PlainMessage) -> Sent:
    """`ChatService._insert` for a message that shares no files, on SQLite."""
    message_id = new_id()
    reader = plain.reader
    conversation = str(plain.conversation_id)
    sender = str(plain.sender_id) if plain.sender_id is not None else None
    when = Message._meta.fields_map["created_at"].to_db_value(plain.now, Message)
    async with connection.acquire_connection() as aio:
        try:
            # aiosqlite's `_execute` queues a function for its worker thread (what its own
            # `execute`, `commit` ... do): the whole transaction in one hop.
            result = await aio._execute(
                _send_in_sqlite,
                aio._conn,
                (
                    conversation,
                    str(reader.user_id) if reader is not None else None,
                    reader is None or may_read_any(reader),
                ),
                (
                    when,
                    when,
                    sender,
                    ConversationStatus.RESOLVED.value,
                    ConversationStatus.OPEN.value,
                    conversation,
                ),
                (
                    str(message_id),
                    conversation,
                    sender,
                    plain.client_msg_id,
                    plain.kind.value,
                    plain.body,
                    Message._meta.fields_map["attachments"].to_db_value(plain.attachments, Message),
                    when,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(exc) from exc
        except sqlite3.OperationalError as exc:
            raise OperationalError(exc) from exc
    if result is None:
        raise NotFound("conversation_not_found", "No such conversation")
    previous, row = result
    to_datetime = Conversation._meta.fields_map["created_at"].to_python_value
    conversation_view = ConversationView(
        id=plain.conversation_id,
        customer_id=_uuid(row["customer_id"]),
        assignee_id=None if row["assignee_id"] is None else _uuid(row["assignee_id"]),
        subject=row["subject"],
        status=ConversationStatus(row["status"]),
        last_seq=int(row["last_seq"]),
        created_at=to_datetime(row["created_at"]),
        last_message_at=to_datetime(row["last_message_at"]),
    )
    return plain.sent(message_id, conversation_view, previous_status=previous)


def _attachment(file: File) -> dict[str, Any]:
    """What a message keeps of an attached file: enough to show it without a lookup."""
    return {
        "file_id": str(file.id),
        "name": file.name,
        "size": file.size,
        "mime_type": file.mime_type,
        "kind": file.kind,
        "version": file.current_version,
    }
