"""The signing key: `SECRET_KEY` when set, else one generated at first start and kept in var/."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings

_KEY_FILE = "secret_key"


@dataclass(frozen=True, slots=True)
class SigningKey:
    value: str
    key_id: str  # a short fingerprint, so tokens name the key that signed them (rotation)


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def load_signing_key(settings: Settings) -> SigningKey:
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        return SigningKey(value=value, key_id=_fingerprint(value))
    return _load_or_create(settings.data_dir / _KEY_FILE)


def _load_or_create(path: Path) -> SigningKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write a temporary file, then hard-link it into place: the link is atomic and fails
        # if another process got there first, so every process ends up with the same key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    value = path.read_text(encoding="utf-8").strip()
    return SigningKey(value=value, key_id=_fingerprint(value))
