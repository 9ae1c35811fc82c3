"""Live support chat: conversations, their gap-free numbered messages, read states, canned
replies; and the per-user notification inbox the hub replays on `sync`.

`Conversation.last_seq` is the conversation's message counter: a message takes the next number
inside the transaction that inserts it, under the conversation row's lock, so numbers are
1, 2, 3 ... without gaps or repeats whichever hub node accepts the message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"


class MessageKind(StrEnum):
    TEXT = "text"
    SYSTEM = "system"  # assignment, transfer, status changes


class Conversation(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    customer: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="conversations", on_delete=fields.CASCADE
    )
    assignee: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="assigned_conversations", null=True, on_delete=fields.SET_NULL
    )
    subject = fields.CharField(max_length=200, default="")
    status = fields.CharEnumField(
        ConversationStatus, max_length=10, default=ConversationStatus.OPEN
    )
    last_seq = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    last_message_at = fields.DatetimeField(null=True)

    class Meta:
        table = "conversations"
        indexes = (
            ("status", "assignee_id"),
            ("customer_id", "created_at"),
            ("assignee_id", "created_at"),
        )


class Message(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    seq = fields.IntField()
    sender: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    client_msg_id = fields.CharField(max_length=64, null=True)
    kind = fields.CharEnumField(MessageKind, max_length=10, default=MessageKind.TEXT)
    body = fields.TextField()
    attachments: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "messages"
        unique_together = (("conversation", "seq"), ("conversation", "sender", "client_msg_id"))


class ReadState(Model):
    """How far a participant has read a conversation (its read receipt)."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="read_states", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="read_states", on_delete=fields.CASCADE
    )
    last_read_seq = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "read_states"
        unique_together = (("conversation", "user"),)


class CannedReply(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    shortcut = fields.CharField(max_length=40, unique=True)
    title = fields.CharField(max_length=120)
    body = fields.TextField()
    created_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="canned_replies", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "canned_replies"


class Notification(Model):
    """One entry of a user's inbox: written first, then pushed to their open connections."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="notifications", on_delete=fields.CASCADE
    )
    type = fields.CharField(max_length=60)
    title = fields.CharField(max_length=200)
    body = fields.TextField(default="")
    link = fields.CharField(max_length=500, default="")
    data: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    delivered_at = fields.DatetimeField(null=True)
    read_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notifications"
        indexes = (("user_id", "id"),)


class DashboardFollow(Model):
    """Which dashboard event types a staff member follows (none stored = all they may see)."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.OneToOneRelation[Any] = fields.OneToOneField(
        "models.User", related_name="dashboard_follow", on_delete=fields.CASCADE
    )
    event_types: fields.JSONField[list[str]] = fields.JSONField(default=list)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "dashboard_follows"
