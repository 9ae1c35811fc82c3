"""The mail queue as the app runs it, built from the settings."""

from __future__ import annotations

from core.mail import Mailer
from core.rate_limit import Limit, RateLimiter
from core.settings import Settings
from core.tokens import KeyRing
from hub.email.composer import MailComposer
from hub.email.dkim import sender_domain
from hub.email.loader import MailTemplates
from hub.email.queue import EmailQueue, MailPolicy
from hub.email.tracking import LinkSigner, MailLinks


def create_mail_links(settings: Settings, keys: KeyRing) -> MailLinks:
    return MailLinks(
        signer=LinkSigner(keys),
        public_url=settings.public_url,
        redirect_hosts=settings.email_redirect_hosts,
    )


def create_email_queue(
    settings: Settings, *, mailer: Mailer, limiter: RateLimiter, keys: KeyRing
) -> EmailQueue:
    """Start it with `start()` inside the running loop; stop it with `close()`."""
    composer = MailComposer(
        templates=MailTemplates(),
        links=create_mail_links(settings, keys),
        sender_domain=sender_domain(settings.mail_from),
    )
    return EmailQueue(
        mailer=mailer,
        composer=composer,
        limiter=limiter,
        policy=MailPolicy(
            max_attempts=settings.email_max_attempts,
            base_delay=settings.email_retry_base_seconds,
        ),
        notification_delay=settings.notification_email_delay_seconds,
        domain_limit=Limit(settings.email_domain_rate_per_minute, 60.0),
        poll_seconds=settings.email_poll_seconds,
    )
