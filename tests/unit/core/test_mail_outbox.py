from __future__ import annotations

import os
import re
import stat
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from core.mail import OutboxMailer, OutgoingEmail, SmtpMailer, create_mailer

SENDER = "IdEinstein <noreply@ideinstein.test>"
NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}\.eml$")


def _read(path: Path) -> EmailMessage:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _body(part: EmailMessage) -> str:
    # The file's lines end in CRLF (RFC 5322), and so do the decoded bodies.
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def _files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


async def test_outbox_writes_one_rfc5322_file_with_both_parts(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    mailer = OutboxMailer(outbox, sender=SENDER)

    message_id = await mailer.send(
        OutgoingEmail(
            to="Jane Doe <jane@example.com>",
            subject="Angebot für Ihr Teil",
            text="Hallo Jörg,\nyour quote is ready.\n",
            html="<p>Hallo Jörg, your quote is <b>ready</b>.</p>",
            headers={"List-Unsubscribe": "<https://ideinstein.test/unsubscribe?t=abc>"},
        )
    )

    [path] = _files(outbox)
    assert NAME.match(path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = _read(path)
    assert message["Message-ID"] == message_id
    assert re.fullmatch(r"<[^@<>]+@ideinstein\.test>", message_id)
    assert message["From"] == SENDER
    assert message["To"] == "Jane Doe <jane@example.com>"
    assert message["Subject"] == "Angebot für Ihr Teil"
    assert message["List-Unsubscribe"] == "<https://ideinstein.test/unsubscribe?t=abc>"
    assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert (text.get_content_type(), _body(text)) == (
        "text/plain",
        "Hallo Jörg,\nyour quote is ready.\n",
    )
    assert (html.get_content_type(), _body(html)) == (
        "text/html",
        "<p>Hallo Jörg, your quote is <b>ready</b>.</p>\n",
    )


async def test_text_only_mail_is_a_single_part(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, sender="noreply@ideinstein.test")

    await mailer.send(OutgoingEmail(to="jane@example.com", subject="Hi", text="Plain.\n"))

    [path] = _files(tmp_path)
    message = _read(path)
    assert message.get_content_type() == "text/plain"
    assert _body(message) == "Plain.\n"
    assert message["From"] == "noreply@ideinstein.test"


async def test_outbox_creates_missing_directories(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    mailer = OutboxMailer(outbox, sender=SENDER)

    await mailer.send(OutgoingEmail(to="jane@example.com", subject="Hi", text="x"))

    assert len(_files(outbox)) == 1


async def test_file_names_sort_in_sending_order(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, sender=SENDER)

    ids = [
        await mailer.send(OutgoingEmail(to="jane@example.com", subject=f"n{n}", text="x"))
        for n in range(5)
    ]

    messages = [_read(path) for path in _files(tmp_path)]
    assert [m["Subject"] for m in messages] == ["n0", "n1", "n2", "n3", "n4"]
    assert [m["Message-ID"] for m in messages] == ids
    assert len(set(ids)) == 5


@pytest.mark.parametrize(
    "email",
    [
        OutgoingEmail(to="jane@example.com\r\nBcc: all@example.com", subject="Hi", text="x"),
        OutgoingEmail(to="jane@example.com\nBcc: all@example.com", subject="Hi", text="x"),
        OutgoingEmail(to="jane@example.com", subject="Hi\r\nBcc: all@example.com", text="x"),
        OutgoingEmail(to="jane@example.com", subject="Hi\rthere", text="x"),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"X-A": "1\n2"}),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"X-A\r\nB": "1"}),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"X:A": "1"}),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"": "1"}),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"Bcc Me": "1"}),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"from": "a@b.c"}),
        OutgoingEmail(to="jane@example.com", subject="Hi", text="x", headers={"Message-ID": "<a>"}),
        OutgoingEmail(
            to="jane@example.com", subject="Hi", text="x", headers={"Content-Type": "text/html"}
        ),
        OutgoingEmail(to="jane@example.com, all@example.com", subject="Hi", text="x"),
        OutgoingEmail(to="jane", subject="Hi", text="x"),
        OutgoingEmail(to="", subject="Hi", text="x"),
    ],
    ids=lambda email: repr(email)[:40],
)
async def test_injected_or_malformed_headers_are_refused_and_nothing_is_written(
    tmp_path: Path, email: OutgoingEmail
) -> None:
    outbox = tmp_path / "outbox"
    mailer = OutboxMailer(outbox, sender=SENDER)

    with pytest.raises(ValueError, match=r"CR or LF|address|header"):
        await mailer.send(email)

    assert not outbox.exists()


@pytest.mark.parametrize(
    "sender", ["noreply", "", "a@x.test, b@x.test", "noreply@ideinstein.test\r\nBcc: x@y.z"]
)
def test_a_sender_must_be_one_address(tmp_path: Path, sender: str) -> None:
    with pytest.raises(ValueError, match="sender"):
        OutboxMailer(tmp_path, sender=sender)


async def test_a_failed_write_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailer = OutboxMailer(tmp_path, sender=SENDER)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        await mailer.send(OutgoingEmail(to="jane@example.com", subject="Hi", text="x"))

    assert os.listdir(tmp_path) == []


async def test_close_is_harmless_and_sending_goes_on(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path, sender=SENDER)
    await mailer.close()
    await mailer.send(OutgoingEmail(to="jane@example.com", subject="Hi", text="x"))
    assert len(_files(tmp_path)) == 1


@pytest.mark.parametrize("smtp_url", [None, ""])
def test_without_smtp_url_mail_goes_to_the_outbox(tmp_path: Path, smtp_url: str | None) -> None:
    mailer = create_mailer(smtp_url=smtp_url, outbox_dir=tmp_path / "outbox", sender=SENDER)
    assert isinstance(mailer, OutboxMailer)
    assert mailer.directory == tmp_path / "outbox"
    assert mailer.sender == SENDER


def test_with_smtp_url_mail_goes_to_smtp(tmp_path: Path) -> None:
    mailer = create_mailer(
        smtp_url="smtp://user:pw@mail.internal:2525", outbox_dir=tmp_path, sender=SENDER
    )
    assert isinstance(mailer, SmtpMailer)
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize(
    "url", ["http://user:s3cret@mail.internal", "smtp://", "smtps://user:s3cret@:465", "mail"]
)
def test_a_bad_smtp_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP URL must be") as caught:
        SmtpMailer(url, sender=SENDER)
    assert "s3cret" not in str(caught.value)
