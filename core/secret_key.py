"""The signing keys: `SECRET_KEY` (plus `PREVIOUS_SECRET_KEYS` during a rotation) when set, else
one key generated at first start and kept in var/ (embedded mode)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.settings import Settings
from core.tokens import KeyRing, signing_key

_KEY_FILE = "secret_key"


def load_key_ring(settings: Settings) -> KeyRing:
    previous = tuple(signing_key(key.get_secret_value()) for key in settings.previous_secret_keys)
    if settings.secret_key is not None:
        return KeyRing(
            current=signing_key(settings.secret_key.get_secret_value()), previous=previous
        )
    return KeyRing(
        current=signing_key(_load_or_create(settings.data_dir / _KEY_FILE)), previous=previous
    )


def _load_or_create(path: Path) -> str:
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
    return path.read_text(encoding="utf-8").strip()
