"""Web push: the browsers' push subscriptions, and a record of every delivery attempt.

A `DeliveryAttempt` is one notification on its way to one destination over one channel
(`web_push` now, `email` later). Each try updates its row, so the row is the truth a retry
(or a later channel router) reads: its status, how often it was tried, the last error and
when the next try is due.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class DeliveryChannel(StrEnum):
    WEB_PUSH = "web_push"
    EMAIL = "email"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not yet tried, or waiting for its next try
    SENT = "sent"  # the push service accepted it
    FAILED = "failed"  # refused for good (bad request, too large)
    GONE = "gone"  # the subscription no longer exists (404 or 410), now deleted
    DEAD = "dead"  # every allowed attempt failed
    CANCELLED = "cancelled"  # read elsewhere before a retry was due


class PushSubscription(Model):
    """A browser's PushSubscription (endpoint and keys), bound to the user who registered it."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="push_subscriptions", on_delete=fields.CASCADE
    )
    endpoint = fields.CharField(max_length=2000, unique=True)
    p256dh = fields.CharField(max_length=100)
    auth = fields.CharField(max_length=50)
    user_agent = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_success_at = fields.DatetimeField(null=True)
    failure_count = fields.IntField(default=0)

    class Meta:
        table = "push_subscriptions"


class DeliveryAttempt(Model):
    """One notification to one destination over one channel, with the state of its tries."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    notification: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Notification",
        related_name="delivery_attempts",
        null=True,
        on_delete=fields.SET_NULL,
    )
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="delivery_attempts", on_delete=fields.CASCADE
    )
    subscription: fields.ForeignKeyNullableRelation[PushSubscription] = fields.ForeignKeyField(
        "models.PushSubscription",
        related_name="delivery_attempts",
        null=True,
        on_delete=fields.SET_NULL,
    )
    channel = fields.CharEnumField(DeliveryChannel, max_length=20)
    status = fields.CharEnumField(DeliveryStatus, max_length=10, default=DeliveryStatus.PENDING)
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=500, default="")
    next_attempt_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "delivery_attempts"
        indexes = (("status", "next_attempt_at"), ("notification_id", "channel"))
