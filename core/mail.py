"""Outgoing mail: one seam, two backends, the same message.

The embedded mode writes each message as an `.eml` file into `var/outbox` (open it in any mail
client, or read it in a test); production hands it to an SMTP server. Both build the message
with the same code, so what a developer sees in the outbox is what a customer receives.

Send only after the transaction that made the message's data has committed. A failed SMTP
delivery raises `MailDeliveryError`; its `retryable` flag says whether trying again can help
(4xx replies, lost connections) or not (5xx replies, a server that lacks what we need).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import email.policy
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from core.clock import utcnow
from core.logs import get_logger

log = get_logger(__name__)

SMTP_PORT = 587  # submission, upgraded with STARTTLS when the server offers it
SMTPS_PORT = 465  # implicit TLS

_FILE_POLICY = email.policy.SMTP  # the default policy with RFC 5322 line ends (CRLF)

# Set by the mailer itself; letting callers set them would allow a second From or a broken body.
_RESERVED_HEADERS = frozenset({"from", "to", "subject", "date", "message-id", "mime-version"})


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One message to one recipient; `headers` holds extras such as `List-Unsubscribe`."""

    to: str
    subject: str
    text: str  # plain-text body (always present: some clients and filters read only this)
    html: str | None = None  # optional HTML alternative
    headers: Mapping[str, str] = field(default_factory=dict)


class MailDeliveryError(Exception):
    """The SMTP server did not take the message. Retry only when `retryable` is true."""

    def __init__(self, message: str, *, retryable: bool, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.smtp_code = smtp_code


def _check_single_line(value: str, what: str) -> None:
    # A line break in a header value would let the caller's input add headers (Bcc:) or a body.
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain CR or LF")


def _single_address(value: str, what: str) -> str:
    """The bare address of a one-address field (`Jane <jane@example.com>` -> the address)."""
    _check_single_line(value, what)
    # getaddresses, not parseaddr: parseaddr silently keeps the first of `a@x, b@y`.
    addresses = getaddresses([value])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        raise ValueError(f"{what} must be exactly one email address")
    return addresses[0][1]


def _check_header_name(name: str) -> None:
    # RFC 5322 field names: printable ASCII without the colon.
    if not name or not all(33 <= ord(ch) <= 126 and ch != ":" for ch in name):
        raise ValueError(f"header name {name!r} is not a valid field name")
    lowered = name.lower()
    if lowered in _RESERVED_HEADERS or lowered.startswith("content-"):
        raise ValueError(f"header {name!r} is set by the mailer")


class Mailer(abc.ABC):
    """Sends `OutgoingEmail`s from one `sender` (`Name <address>` or a bare address)."""

    def __init__(self, *, sender: str) -> None:
        self.sender = sender
        self._sender_address = _single_address(sender, "sender")
        self._domain = self._sender_address.rpartition("@")[2]

    @abc.abstractmethod
    async def send(self, email: OutgoingEmail) -> str:
        """Deliver `email`; return the Message-ID it carries."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; neither backend here keeps one."""

    def build_message(self, email: OutgoingEmail) -> EmailMessage:
        """The RFC 5322 message for `email`; `ValueError` when a field would inject headers."""
        _single_address(email.to, "to")
        _check_single_line(email.subject, "subject")
        for name, value in email.headers.items():
            _check_header_name(name)
            _check_single_line(value, f"header {name}")
        message = EmailMessage()
        # With a domain, make_msgid does not call socket.getfqdn (slow, and blocks the loop).
        message["Message-ID"] = make_msgid(domain=self._domain)
        message["Date"] = format_datetime(utcnow())
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.text)
        if email.html is not None:
            message.add_alternative(email.html, subtype="html")  # -> multipart/alternative
        return message


class OutboxMailer(Mailer):
    """Embedded mode: each message becomes one `.eml` file (CRLF line ends) in `directory`.

    Names are `<UTC timestamp>-<random>.eml`, so sorting the names lists messages oldest first.
    Each file is written under a dot-name, flushed to disk and renamed into place: a reader that
    lists `*.eml` never sees half a message, and a crash leaves no torn file. The files are
    readable by their owner only, as they can carry sign-in links. The directory is created on
    first use, and all file work runs in a thread, off the event loop.
    """

    def __init__(self, directory: Path, *, sender: str) -> None:
        super().__init__(sender=sender)
        self.directory = directory

    async def send(self, email: OutgoingEmail) -> str:
        message = self.build_message(email)
        path = await asyncio.to_thread(self._write, message.as_bytes(policy=_FILE_POLICY))
        message_id = str(message["Message-ID"])
        log.info("mail.written", message_id=message_id, path=str(path))
        return message_id

    def _write(self, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # Make the rename itself durable.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path


class SmtpMailer(Mailer):
    """Production: hands each message to the server in `smtp[s]://USER:PASS@HOST:PORT`.

    `smtp://` (default port 587) upgrades with STARTTLS whenever the server offers it (aiosmtplib's
    `start_tls=None`); `smtps://` (default port 465) speaks TLS from the first byte. Certificates
    are checked against the system's trust store. User and password are URL-decoded.

    One connection per message (`aiosmtplib.send`): transactional mail is a trickle, so the saved
    handshake would not pay for what a kept connection needs: a lock (SMTP carries one
    transaction at a time), reconnecting after the server drops an idle client (most do within
    minutes) and care at shutdown. A fresh connection has none of those failure modes, which is
    also why `close` has nothing to do.
    """

    def __init__(self, url: str, *, sender: str, timeout: float = 10.0) -> None:
        super().__init__(sender=sender)
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # The URL itself is not repeated: it may hold a password.
            raise ValueError("SMTP URL must be smtp://HOST[:PORT] or smtps://HOST[:PORT]")
        self._use_tls = parts.scheme == "smtps"
        self._hostname = parts.hostname
        self._port = parts.port or (SMTPS_PORT if self._use_tls else SMTP_PORT)
        self._username = unquote(parts.username) if parts.username is not None else None
        self._password = unquote(parts.password) if parts.password is not None else None
        self._timeout = timeout

    async def send(self, email: OutgoingEmail) -> str:
        message = self.build_message(email)
        message_id = str(message["Message-ID"])
        return await self.deliver(
            message, recipient=_single_address(email.to, "to"), message_id=message_id
        )

    async def deliver(
        self,
        message: EmailMessage | bytes,
        *,
        recipient: str,
        message_id: str,
        signed: bool = False,
    ) -> str:
        """Hand a built message (or its exact bytes, e.g. DKIM-signed) to the SMTP server;
        `MailDeliveryError` says whether trying again may help."""
        try:
            await aiosmtplib.send(
                message,
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
        log.info("mail.sent", message_id=message_id, host=self._hostname, signed=signed)
        return message_id


def _delivery_error(exc: Exception) -> MailDeliveryError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]  # one recipient per message: its reply is the answer
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 4xx: "not now" (greylisting, full mailbox, busy); 5xx: "never" (no such user, refused).
        return MailDeliveryError(
            f"SMTP server replied {exc.code} {exc.message}",
            retryable=exc.code < 500,
            smtp_code=exc.code,
        )
    if isinstance(exc, OSError):  # refused, reset or timed out connections, TLS failures
        return MailDeliveryError(f"SMTP connection failed: {exc}", retryable=True)
    # The server lacks something we need (AUTH, STARTTLS, SMTPUTF8): a configuration problem.
    return MailDeliveryError(f"SMTP delivery impossible: {exc}", retryable=False)


def create_mailer(*, smtp_url: str | None, outbox_dir: Path, sender: str) -> Mailer:
    """SMTP when `SMTP_URL` is set; otherwise the outbox of the embedded mode."""
    if smtp_url:
        return SmtpMailer(smtp_url, sender=sender)
    return OutboxMailer(outbox_dir, sender=sender)
