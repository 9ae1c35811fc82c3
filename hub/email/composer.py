"""One queued mail (`EmailMessage` row) to the `OutgoingEmail` the mailer sends: rendered in
the recipient's locale and A/B variant, with tracked links, the open pixel, and the
List-Unsubscribe headers (RFC 2369, one-click per RFC 8058) on every notification mail.

Transactional mails without a category (verification, password reset) carry neither tracking
nor unsubscribe headers: they are not optional and should not be measured.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from core.mail import OutgoingEmail
from db.models.email import EmailMessage
from hub.email.loader import MailTemplates
from hub.email.tracking import MailLinks

SETTINGS_PATH = "/settings/notifications"


class MailComposer:
    def __init__(self, *, templates: MailTemplates, links: MailLinks, sender_domain: str) -> None:
        self.templates = templates
        self.links = links
        self._domain = sender_domain

    def compose(self, row: EmailMessage) -> OutgoingEmail:
        """Raises `KeyError` (unknown template) or jinja2's `UndefinedError` (missing value)."""
        context: dict[str, Any] = dict(row.context)
        headers: dict[str, str] = {}
        user_id: UUID | None = row.user_id  # type: ignore[attr-defined]
        tracked = bool(row.category)
        if tracked and user_id is not None:
            token = self.links.unsubscribe(
                user_id=user_id, address=row.to_address, type=row.category
            )
            url = self.links.unsubscribe_url(token)
            mailto = self.links.unsubscribe_mailto(token, domain=self._domain)
            context["unsubscribe_url"] = url
            context["settings_url"] = self.links.public_url + SETTINGS_PATH
            headers["List-Unsubscribe"] = f"<{mailto}>, <{url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if tracked:
            context["open_pixel_url"] = self.links.open_pixel(row.id)
        rendered = self.templates.render(
            row.template,
            locale=row.locale,
            variant=row.variant,
            context=context,
            track=(lambda url: self.links.click(row.id, url)) if tracked else None,
        )
        return OutgoingEmail(
            to=row.to_address,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            headers=headers,
        )
