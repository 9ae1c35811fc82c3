"""Email: notification preferences, the outgoing mail queue (with its dead letters), the
suppression list, sticky A/B variant assignments and the tracking events of each mail.

- `NotificationPreference`: one row per user. `channels` holds only what the user changed
  from the per-type defaults (`{type: {channel: bool}}`); quiet hours are a local time window
  in the user's time zone; `digest_minutes` > 0 gathers notification mails into one per window.
  The user's locale lives here too (there is none on `User`).
- `EmailMessage`: one mail to one address. It is the queue: `queued` rows whose
  `next_attempt_at` is due are claimed (conditional update, so one hub process sends each
  try), tried, and then `sent`, re-queued with backoff, or `dead` (the dead letters).
- `EmailSuppression`: addresses we must not mail: `*` (every mail: hard bounce, complaint)
  or one notification type (an unsubscribe from that type's mails).
- `EmailVariantAssignment`: the A/B variant a user got for a template, drawn once and kept.
- `EmailEvent`: opens, clicks, bounces, complaints and unsubscribes, per mail when known.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class EmailStatus(StrEnum):
    QUEUED = "queued"  # waiting for its (next) try
    SENDING = "sending"  # claimed by a hub process until `claimed_until`
    SENT = "sent"  # the SMTP server (or the outbox) took it
    FAILED = "failed"  # refused for good (5xx, bad address)
    DEAD = "dead"  # every allowed try failed: a dead letter
    SUPPRESSED = "suppressed"  # the address is on the suppression list
    CANCELLED = "cancelled"  # no longer wanted (its notifications were read)


class EmailEventKind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


class NotificationPreference(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.OneToOneRelation[Any] = fields.OneToOneField(
        "models.User", related_name="notification_preference", on_delete=fields.CASCADE
    )
    channels: fields.JSONField[dict[str, dict[str, bool]]] = fields.JSONField(default=dict)
    quiet_start = fields.CharField(max_length=5, null=True)  # "22:00", local time
    quiet_end = fields.CharField(max_length=5, null=True)  # "07:00", local time
    timezone = fields.CharField(max_length=64, default="UTC")
    digest_minutes = fields.IntField(default=0)  # 0 = one mail per notification
    locale = fields.CharField(max_length=10, default="en")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "notification_preferences"


class EmailMessage(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="email_messages", null=True, on_delete=fields.SET_NULL
    )
    to_address = fields.CharField(max_length=320)
    template = fields.CharField(max_length=60)
    category = fields.CharField(max_length=60, default="")  # notification type, or ""
    locale = fields.CharField(max_length=10, default="en")
    variant = fields.CharField(max_length=20, default="a")
    context: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    notification_ids: fields.JSONField[list[str]] = fields.JSONField(default=list)
    status = fields.CharEnumField(EmailStatus, max_length=12, default=EmailStatus.QUEUED)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    claimed_until = fields.DatetimeField(null=True)
    last_error = fields.CharField(max_length=500, default="")
    smtp_message_id = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    opened_at = fields.DatetimeField(null=True)
    clicked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "email_messages"
        indexes = (("status", "next_attempt_at"), ("template", "variant"))


class EmailSuppression(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    address = fields.CharField(max_length=320)  # lower-cased
    scope = fields.CharField(max_length=60, default="*")  # "*" or a notification type
    reason = fields.CharField(max_length=20)  # hard_bounce, complaint, unsubscribe
    detail = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "email_suppressions"
        unique_together = (("address", "scope"),)


class EmailVariantAssignment(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="email_variants", on_delete=fields.CASCADE
    )
    template = fields.CharField(max_length=60)
    variant = fields.CharField(max_length=20)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "email_variant_assignments"
        unique_together = (("user", "template"),)


class EmailEvent(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    message: fields.ForeignKeyNullableRelation[EmailMessage] = fields.ForeignKeyField(
        "models.EmailMessage", related_name="events", null=True, on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(EmailEventKind, max_length=12)
    address = fields.CharField(max_length=320, default="")
    detail = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "email_events"
        indexes = (("message_id", "kind"),)
