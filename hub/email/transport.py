"""core.mail's two backends, DKIM-signing what they send.

The message is built by `Mailer.build_message` (which refuses header injection), serialised
ONCE with CRLF line ends, signed over those exact bytes, and those bytes are what goes to the
SMTP server or into the outbox file: re-serialising after signing could fold a header or pick
a new MIME boundary and break the signature.
"""

from __future__ import annotations

import asyncio
import email.policy
from email.utils import getaddresses
from pathlib import Path

from core.logs import get_logger
from core.mail import Mailer, OutboxMailer, OutgoingEmail, SmtpMailer
from core.settings import Settings
from hub.email.dkim import DkimSigner, create_dkim_signer

log = get_logger(__name__)


async def signed_bytes(
    mailer: Mailer, signer: DkimSigner | None, mail: OutgoingEmail
) -> tuple[bytes, str]:
    """The wire form of `mail` (signed when there is a signer) and its Message-ID."""
    message = mailer.build_message(mail)
    data = message.as_bytes(policy=email.policy.SMTP)
    if signer is not None:
        data = await asyncio.to_thread(signer.sign, data)  # RSA: off the event loop
    return data, str(message["Message-ID"])


class SignedOutboxMailer(OutboxMailer):
    def __init__(self, directory: Path, *, sender: str, signer: DkimSigner | None) -> None:
        super().__init__(directory, sender=sender)
        self.signer = signer

    async def send(self, email: OutgoingEmail) -> str:
        data, message_id = await signed_bytes(self, self.signer, email)
        path = await asyncio.to_thread(self._write, data)
        log.info("mail.written", message_id=message_id, path=str(path))
        return message_id


class SignedSmtpMailer(SmtpMailer):
    def __init__(self, url: str, *, sender: str, signer: DkimSigner | None) -> None:
        super().__init__(url, sender=sender)
        self.signer = signer

    async def send(self, email: OutgoingEmail) -> str:
        data, message_id = await signed_bytes(self, self.signer, email)
        [(_, recipient)] = getaddresses([email.to])
        return await self.deliver(
            data, recipient=recipient, message_id=message_id, signed=self.signer is not None
        )


def create_signed_mailer(settings: Settings) -> Mailer:
    """As core.mail.create_mailer, with DKIM when DKIM_PRIVATE_KEY is set."""
    signer = create_dkim_signer(settings)
    if settings.smtp_url:
        return SignedSmtpMailer(settings.smtp_url, sender=settings.mail_from, signer=signer)
    return SignedOutboxMailer(settings.outbox_dir, sender=settings.mail_from, signer=signer)
