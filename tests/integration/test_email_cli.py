"""`ideinstein email dns-records`: the SPF, DKIM and DMARC records for MAIL_FROM's domain; the
DKIM record is the public half of DKIM_PRIVATE_KEY (a signature made with it verifies)."""

from __future__ import annotations

import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.cli import main
from hub.email.dkim import DkimSigner


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("MAIL_FROM", "IdEinstein <noreply@mail.ideinstein.test>")


def test_prints_spf_dkim_and_dmarc_records(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    monkeypatch.setenv("DKIM_PRIVATE_KEY", pem.replace("\n", "\\n"))  # one line, as in .env
    monkeypatch.setenv("DKIM_SELECTOR", "s2026")

    assert main(["email", "dns-records"]) == 0

    out = capsys.readouterr().out
    assert 'mail.ideinstein.test. 3600 IN TXT "v=spf1 mx a ~all"' in out
    assert (
        '_dmarc.mail.ideinstein.test. 3600 IN TXT "v=DMARC1; p=quarantine; adkim=r; aspf=r; '
        'rua=mailto:dmarc@mail.ideinstein.test"' in out
    )
    [dkim_line] = [line for line in out.splitlines() if line.startswith("s2026._domainkey.")]
    published = "".join(re.findall(r'"([^"]*)"', dkim_line))
    assert published.startswith("v=DKIM1; k=rsa; p=")
    # A message signed with the key verifies against exactly what was printed.
    signer = DkimSigner(private_pem=pem.encode(), selector="s2026", domain="mail.ideinstein.test")
    message = (
        b"From: noreply@mail.ideinstein.test\r\nTo: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    signed = signer.sign(message)
    records = {b"s2026._domainkey.mail.ideinstein.test.": published.encode()}
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: records.get(name)) is True


def test_without_a_key_there_is_no_dkim_record(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["email", "dns-records"]) == 0

    out = capsys.readouterr().out
    assert "DKIM_PRIVATE_KEY is not set" in out
    assert "_domainkey" not in out
    assert "v=spf1" in out
    assert "v=DMARC1" in out


def test_a_bad_key_is_a_configuration_error(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DKIM_PRIVATE_KEY", "not a key")

    assert main(["email", "dns-records"]) == 2

    err = capsys.readouterr().err
    assert "DKIM_PRIVATE_KEY" in err
    assert "not a key" not in err
