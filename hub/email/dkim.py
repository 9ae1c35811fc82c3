"""DKIM signing (RFC 6376, rsa-sha256, relaxed/relaxed) with dkimpy, and the DNS records to
publish for MAIL_FROM's domain (SPF, DKIM, DMARC).

The key comes from `DKIM_PRIVATE_KEY` (a PEM RSA key; `\\n` escapes are accepted, as env
files often hold one line); the selector from `DKIM_SELECTOR`; the signing domain is the
domain of `MAIL_FROM`. Unset key = mail goes out unsigned.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from email.utils import getaddresses

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.errors import ConfigError
from core.settings import Settings

# Headers signed when present; List-Unsubscribe(-Post) must be covered (RFC 8058 section 4).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
MIN_KEY_BITS = 1024


def sender_domain(mail_from: str) -> str:
    [(_, address)] = getaddresses([mail_from])
    return address.rpartition("@")[2].lower()


class DkimSigner:
    def __init__(self, *, private_pem: bytes, selector: str, domain: str) -> None:
        try:
            key = serialization.load_pem_private_key(private_pem, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                "DKIM_PRIVATE_KEY: not a PEM private key", setting="DKIM_PRIVATE_KEY"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
            raise ConfigError(
                f"DKIM_PRIVATE_KEY: must be an RSA key of at least {MIN_KEY_BITS} bits",
                setting="DKIM_PRIVATE_KEY",
            )
        # dkimpy reads PKCS#1 or PKCS#8; hand it one canonical form.
        self._pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._public = key.public_key()
        self.selector = selector
        self.domain = domain

    def __repr__(self) -> str:
        return f"DkimSigner(selector={self.selector!r}, domain={self.domain!r})"

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF line ends) with its DKIM-Signature header in front."""
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")
        }
        headers = [name for name in SIGNED_HEADERS if name in present]
        signature: bytes = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self._pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
        )
        return signature + message

    def public_record(self) -> str:
        """The TXT value at `<selector>._domainkey.<domain>`."""
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def create_dkim_signer(settings: Settings) -> DkimSigner | None:
    if settings.dkim_private_key is None:
        return None
    pem = settings.dkim_private_key.get_secret_value().replace("\\n", "\n").strip()
    return DkimSigner(
        private_pem=pem.encode("ascii", errors="replace"),
        selector=settings.dkim_selector,
        domain=sender_domain(settings.mail_from),
    )


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    type: str
    value: str
    note: str

    def zone_line(self) -> str:
        # TXT strings longer than 255 characters are split into quoted chunks.
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)]
        quoted = " ".join(f'"{chunk}"' for chunk in chunks)
        return f"{self.name}. 3600 IN {self.type} {quoted}"


def dns_records(settings: Settings) -> list[DnsRecord]:
    """SPF, DKIM (when a key is set) and DMARC for MAIL_FROM's domain."""
    domain = sender_domain(settings.mail_from)
    records = [
        DnsRecord(
            name=domain,
            type="TXT",
            value="v=spf1 mx a ~all",
            note="SPF: add your SMTP provider's include:... before ~all if it sends for you",
        )
    ]
    signer = create_dkim_signer(settings)
    if signer is not None:
        records.append(
            DnsRecord(
                name=f"{signer.selector}._domainkey.{domain}",
                type="TXT",
                value=signer.public_record(),
                note="DKIM: the public half of DKIM_PRIVATE_KEY",
            )
        )
    records.append(
        DnsRecord(
            name=f"_dmarc.{domain}",
            type="TXT",
            value=f"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:dmarc@{domain}",
            note="DMARC: start with p=none to watch the reports, then quarantine or reject",
        )
    )
    return records
