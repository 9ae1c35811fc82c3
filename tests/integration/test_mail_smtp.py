"""SmtpMailer against a real SMTP server (aiosmtpd) on the loopback interface.

Each server runs in its own thread on a free 127.0.0.1 port; TLS certificates come from a
throwaway CA (trustme) that the client trusts through `SSL_CERT_FILE`, as it would trust a
real CA through the system's store.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from core.mail import MailDeliveryError, OutgoingEmail, SmtpMailer

HOST = "127.0.0.1"
SENDER = "IdEinstein <noreply@ideinstein.test>"
USER = "mailer@ideinstein.test"
PASSWORD = "p@ss:w/rd %"  # every character that must be URL-encoded in SMTP_URL
QUOTED_USER = "mailer%40ideinstein.test"
QUOTED_PASSWORD = "p%40ss%3Aw%2Frd%20%25"


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    over_tls: bool


@dataclass
class RecordingHandler:
    """Accepts everything except two mailboxes, and records what arrived."""

    delivered: list[Delivered] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address == "nobody@example.com":
            return "550 5.1.1 No such user"
        if address == "full@example.com":
            return "451 4.2.2 Mailbox full, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        assert envelope.mail_from is not None
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        assert server.transport is not None
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.delivered.append(
            Delivered(envelope.mail_from, list(envelope.rcpt_tos), message, over_tls)
        )
        return "250 Message accepted"


@dataclass
class Server:
    handler: RecordingHandler
    port: int
    logins: list[tuple[bytes, bytes]]


StartServer = Callable[..., Server]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts aiosmtpd controllers on loopback ports; stops each one at teardown."""
    controllers: list[Controller] = []

    def start(*, with_auth: bool = False, **kwargs: Any) -> Server:
        handler = RecordingHandler()
        logins: list[tuple[bytes, bytes]] = []

        def authenticate(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            assert isinstance(data, LoginPassword)
            logins.append((data.login, data.password))
            ok = (data.login, data.password) == (USER.encode(), PASSWORD.encode())
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies

        if with_auth:
            kwargs.update(authenticator=authenticate, auth_required=True)
        port = _free_port()
        controller = Controller(handler, hostname=HOST, port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return Server(handler, port, logins)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
async def server_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, from a CA the client now trusts."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    yield context
    # A TLS connection finishes closing (close_notify both ways) a few loop turns after `send`
    # returns; give it those turns before the test's loop closes, or the socket is reported
    # unclosed. In the service the loop keeps running, so this is a test-only concern.
    await asyncio.sleep(0.2)


def _email(to: str = "Jane Doe <jane@example.com>", **overrides: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "to": to,
        "subject": "Your quote is ready",
        "text": "Hello Jane,\nyour quote is ready.\n",
        "html": "<p>Hello Jane, your quote is <b>ready</b>.</p>",
        "headers": {"List-Unsubscribe": "<https://ideinstein.test/unsubscribe?t=abc>"},
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


async def test_delivers_the_message_with_both_parts(start_server: StartServer) -> None:
    server = start_server()
    mailer = SmtpMailer(f"smtp://{HOST}:{server.port}", sender=SENDER)

    message_id = await mailer.send(_email())
    await mailer.close()

    [delivered] = server.handler.delivered
    assert delivered.mail_from == "noreply@ideinstein.test"
    assert delivered.rcpt_tos == ["jane@example.com"]
    assert not delivered.over_tls  # the server offered no STARTTLS
    message = delivered.message
    assert message["Message-ID"] == message_id
    assert message_id.endswith("@ideinstein.test>")
    assert message["From"] == SENDER
    assert message["To"] == "Jane Doe <jane@example.com>"
    assert message["Subject"] == "Your quote is ready"
    assert message["List-Unsubscribe"] == "<https://ideinstein.test/unsubscribe?t=abc>"
    assert message["Bcc"] is None
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n") == "Hello Jane,\nyour quote is ready.\n"
    assert html.get_content_type() == "text/html"
    assert "your quote is <b>ready</b>" in html.get_content()


async def test_a_550_recipient_is_a_permanent_failure(start_server: StartServer) -> None:
    server = start_server()
    mailer = SmtpMailer(f"smtp://{HOST}:{server.port}", sender=SENDER)

    with pytest.raises(MailDeliveryError, match="550") as caught:
        await mailer.send(_email(to="nobody@example.com"))

    assert caught.value.retryable is False
    assert caught.value.smtp_code == 550
    assert server.handler.delivered == []


async def test_a_451_recipient_is_retryable(start_server: StartServer) -> None:
    server = start_server()
    mailer = SmtpMailer(f"smtp://{HOST}:{server.port}", sender=SENDER)

    with pytest.raises(MailDeliveryError, match="451") as caught:
        await mailer.send(_email(to="full@example.com"))

    assert caught.value.retryable is True
    assert caught.value.smtp_code == 451
    assert server.handler.delivered == []


async def test_a_message_over_the_size_limit_is_a_permanent_failure(
    start_server: StartServer,
) -> None:
    server = start_server(data_size_limit=2048)
    mailer = SmtpMailer(f"smtp://{HOST}:{server.port}", sender=SENDER)

    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(_email(text="x" * 10_000))

    assert caught.value.retryable is False
    assert caught.value.smtp_code == 552
    assert server.handler.delivered == []


async def test_no_server_listening_is_retryable() -> None:
    mailer = SmtpMailer(f"smtp://{HOST}:{_free_port()}", sender=SENDER, timeout=2)

    with pytest.raises(MailDeliveryError, match="connection") as caught:
        await mailer.send(_email())

    assert caught.value.retryable is True
    assert caught.value.smtp_code is None


async def test_starttls_then_auth_with_url_encoded_credentials(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    # aiosmtpd refuses AUTH before TLS: a delivery proves that STARTTLS happened first.
    server = start_server(with_auth=True, tls_context=server_tls, auth_require_tls=True)
    url = f"smtp://{QUOTED_USER}:{QUOTED_PASSWORD}@{HOST}:{server.port}"
    mailer = SmtpMailer(url, sender=SENDER)

    message_id = await mailer.send(_email())

    assert server.logins == [(USER.encode(), PASSWORD.encode())]
    [delivered] = server.handler.delivered
    assert delivered.over_tls
    assert delivered.message["Message-ID"] == message_id


async def test_a_wrong_password_is_a_permanent_failure(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = start_server(with_auth=True, tls_context=server_tls)
    mailer = SmtpMailer(f"smtp://{QUOTED_USER}:wrong@{HOST}:{server.port}", sender=SENDER)

    with pytest.raises(MailDeliveryError, match="535") as caught:
        await mailer.send(_email())

    assert caught.value.retryable is False
    assert caught.value.smtp_code == 535
    assert server.handler.delivered == []


async def test_credentials_for_a_server_without_auth_are_a_permanent_failure(
    start_server: StartServer,
) -> None:
    server = start_server()
    mailer = SmtpMailer(f"smtp://{QUOTED_USER}:pw@{HOST}:{server.port}", sender=SENDER)

    with pytest.raises(MailDeliveryError, match="AUTH") as caught:
        await mailer.send(_email())

    assert caught.value.retryable is False
    assert caught.value.smtp_code is None
    assert server.handler.delivered == []


async def test_smtps_speaks_tls_from_the_first_byte(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = start_server(ssl_context=server_tls)
    mailer = SmtpMailer(f"smtps://{HOST}:{server.port}", sender=SENDER)

    await mailer.send(_email())

    [delivered] = server.handler.delivered
    assert delivered.over_tls
    assert delivered.rcpt_tos == ["jane@example.com"]


async def test_smtps_to_a_plaintext_server_fails_retryably(start_server: StartServer) -> None:
    server = start_server()
    mailer = SmtpMailer(f"smtps://{HOST}:{server.port}", sender=SENDER, timeout=2)

    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(_email())

    assert caught.value.retryable is True
    assert server.handler.delivered == []


@pytest.mark.parametrize(
    "email",
    [
        _email(subject="Hi\r\nBcc: everyone@example.com"),
        _email(to="jane@example.com\r\nBcc: everyone@example.com"),
        _email(headers={"X-Note": "a\nBcc: everyone@example.com"}),
    ],
    ids=["subject", "to", "header"],
)
async def test_header_injection_is_refused_and_nothing_is_sent(
    start_server: StartServer, email: OutgoingEmail
) -> None:
    server = start_server()
    mailer = SmtpMailer(f"smtp://{HOST}:{server.port}", sender=SENDER)

    with pytest.raises(ValueError, match="CR or LF"):
        await mailer.send(email)

    assert server.handler.delivered == []
