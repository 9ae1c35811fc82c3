"""The identity mails (address verification, password reset), from the same Jinja2 templates
as every other transactional mail (hub/email/templates: text and HTML, per locale). They go
out at once, not through the notification queue: someone is waiting for them."""

from __future__ import annotations

from functools import cache

from core.mail import OutgoingEmail
from hub.email.loader import MailTemplates


@cache
def _templates() -> MailTemplates:
    """Built on first use (the Jinja2 environment caches compiled templates)."""
    return MailTemplates()


def _mail(template: str, *, to: str, link: str, locale: str) -> OutgoingEmail:
    rendered = _templates().render(template, locale=locale, context={"url": link})
    return OutgoingEmail(to=to, subject=rendered.subject, text=rendered.text, html=rendered.html)


def verification_email(*, to: str, link: str, locale: str = "en") -> OutgoingEmail:
    return _mail("verify_email", to=to, link=link, locale=locale)


def password_reset_email(*, to: str, link: str, locale: str = "en") -> OutgoingEmail:
    return _mail("password_reset", to=to, link=link, locale=locale)
