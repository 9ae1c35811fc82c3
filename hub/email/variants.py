"""A/B variants of a template: each user draws one at random the first time they are mailed
with it and keeps it (a row per user and template; a unique constraint settles a race), and
results per variant: how many mails were sent, opened, clicked, bounced."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from tortoise.exceptions import IntegrityError

from db.models.email import (
    EmailEvent,
    EmailEventKind,
    EmailMessage,
    EmailStatus,
    EmailVariantAssignment,
)


async def assign_variant(*, user_id: UUID | None, template: str, variants: Sequence[str]) -> str:
    """The user's variant of `template`: drawn once, then always the same one. Mails without
    a user (or templates with one variant) get the first."""
    if user_id is None or len(variants) < 2:
        return variants[0]
    existing = await EmailVariantAssignment.get_or_none(user_id=user_id, template=template)
    if existing is not None and existing.variant in variants:
        return existing.variant
    drawn = secrets.choice(list(variants))
    if existing is not None:  # its variant was retired: draw again, keep the new one
        await EmailVariantAssignment.filter(id=existing.id).update(variant=drawn)
        return drawn
    try:
        await EmailVariantAssignment.create(user_id=user_id, template=template, variant=drawn)
    except IntegrityError:  # another process drew first: theirs counts
        row = await EmailVariantAssignment.get(user_id=user_id, template=template)
        return row.variant
    return drawn


@dataclass(frozen=True, slots=True)
class VariantResult:
    template: str
    variant: str
    sent: int
    opened: int
    clicked: int
    bounced: int

    @property
    def open_rate(self) -> float:
        return self.opened / self.sent if self.sent else 0.0

    @property
    def click_rate(self) -> float:
        return self.clicked / self.sent if self.sent else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0


async def variant_results(template: str | None = None) -> list[VariantResult]:
    """Per template and variant: mails sent, and how many of those were opened, clicked or
    bounced (a mail counts once however often it was opened)."""
    query = EmailMessage.filter(status=EmailStatus.SENT)
    if template is not None:
        query = query.filter(template=template)
    pairs = await query.distinct().values_list("template", "variant")
    results = []
    for name, variant in sorted(set(pairs)):
        sent = query.filter(template=name, variant=variant)
        bounced_ids = await EmailEvent.filter(
            kind=EmailEventKind.BOUNCE,
            message__template=name,
            message__variant=variant,
            message_id__isnull=False,
        ).values_list("message_id", flat=True)
        results.append(
            VariantResult(
                template=str(name),
                variant=str(variant),
                sent=await sent.count(),
                opened=await sent.filter(opened_at__isnull=False).count(),
                clicked=await sent.filter(clicked_at__isnull=False).count(),
                bounced=len(set(bounced_ids)),
            )
        )
    return results
