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

import aiosmtplib

from core.logs import get_logger
from core.mail import Mailer, OutboxMailer, OutgoingEmail, SmtpMailer, _delivery_error
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
        try:
            await aiosmtplib.send(
                data,
                sender=self._sender_address,
                recipients=[recipient],
                hostname=self._hostname,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._use_tls,
                start_tls=None,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = _delivery_error(exc)
            log.warning(
                "mail.failed",
                message_id=message_id,
                retryable=error.retryable,
                smtp_code=error.smtp_code,
                reason=str(error),
            )
            raise error from exc
        log.info("mail.sent", message_id=message_id, host=self._hostname, signed=bool(self.signer))
        return message_id


def create_signed_mailer(settings: Settings) -> Mailer:
    """As core.mail.create_mailer, with DKIM when DKIM_PRIVATE_KEY is set."""
    signer = create_dkim_signer(settings)
    if settings.smtp_url:
        return SignedSmtpMailer(settings.smtp_url, sender=settings.mail_from, signer=signer)
    return SignedOutboxMailer(settings.outbox_dir, sender=settings.mail_from, signer=signer)
