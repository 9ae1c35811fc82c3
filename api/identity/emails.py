"""The identity mails: plain text first (it always renders), with a small HTML alternative."""

from __future__ import annotations

from html import escape

from core.mail import OutgoingEmail

PRODUCT = "IdEinstein"


def _html(paragraph: str, link: str, action: str) -> str:
    return (
        f"<p>{escape(paragraph)}</p>"
        f'<p><a href="{escape(link, quote=True)}">{escape(action)}</a></p>'
        f"<p>If you did not ask for this, ignore this message.</p>"
    )


def verification_email(*, to: str, link: str) -> OutgoingEmail:
    text = (
        f"Welcome to {PRODUCT}.\n\nConfirm your email address by opening this link "
        f"(valid for 48 hours, once):\n\n{link}\n\nIf you did not sign up, ignore this message.\n"
    )
    return OutgoingEmail(
        to=to,
        subject=f"Confirm your {PRODUCT} address",
        text=text,
        html=_html(f"Welcome to {PRODUCT}. Confirm your email address:", link, "Confirm address"),
    )


def password_reset_email(*, to: str, link: str) -> OutgoingEmail:
    text = (
        f"Someone asked to reset the password of your {PRODUCT} account.\n\n"
        f"Choose a new password here (valid for 30 minutes, once):\n\n{link}\n\n"
        "If it was not you, ignore this message: your password stays as it is.\n"
    )
    return OutgoingEmail(
        to=to,
        subject=f"Reset your {PRODUCT} password",
        text=text,
        html=_html(
            "Choose a new password (the link works once, for 30 minutes):", link, "Reset password"
        ),
    )
