"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the mail tests: it keeps every message as the
raw bytes it received (to check DKIM over exactly those) and refuses some mailboxes:
local parts starting with `full` get 451 (try later), with `nobody` 550 (no such user)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpRecorder:
    received: list[Received] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.partition("@")[0]
        if local.startswith("full"):
            self.refused.append((address, 451))
            return "451 4.2.2 Mailbox full, try again later"
        if local.startswith("nobody"):
            self.refused.append((address, 550))
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.received.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content)
        )
        return "250 Message accepted"

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Received]:
        """The first `count` messages, once they are there (the queue sends in the background)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} mails arrived")
            await asyncio.sleep(0.02)
        return self.received[:count]


@dataclass(frozen=True)
class SmtpServer:
    recorder: SmtpRecorder
    port: int

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def run_smtp_server() -> Iterator[SmtpServer]:
    """For a fixture: `yield from run_smtp_server()`."""
    recorder = SmtpRecorder()
    port = _free_port()
    controller = Controller(recorder, hostname=HOST, port=port)
    controller.start()
    try:
        yield SmtpServer(recorder, port)
    finally:
        controller.stop()
