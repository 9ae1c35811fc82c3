from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from core.clock import utcnow
from core.errors import Unauthorized
from core.passwords import (
    hash_password,
    hash_password_async,
    needs_rehash,
    verify_password,
    verify_password_async,
)
from core.secret_key import load_key_ring
from core.settings import Settings
from core.tokens import KeyRing, decode_access_token, issue_access_token, signing_key

KEY = "k" * 48
RING = KeyRing(current=signing_key(KEY))


def _token(**overrides: object) -> str:
    values: dict[str, object] = {
        "key": signing_key(KEY),
        "user_id": "u1",
        "role": "customer",
        "session_id": "s1",
    }
    values.update(overrides)
    return issue_access_token(**values)  # type: ignore[arg-type]


def test_access_token_round_trip() -> None:
    token = _token()
    claims = decode_access_token(token, keys=RING)
    assert (claims.user_id, claims.role, claims.session_id) == ("u1", "customer", "s1")
    assert claims.expires_at > utcnow()
    assert jwt.get_unverified_header(token)["kid"] == RING.current.key_id


def test_expired_token_is_refused_with_token_expired() -> None:
    token = _token(now=utcnow() - timedelta(hours=1))
    with pytest.raises(Unauthorized) as caught:
        decode_access_token(token, keys=RING)
    assert caught.value.code == "token_expired"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        jwt.encode({"sub": "u1"}, KEY, algorithm="HS256", headers={"kid": RING.current.key_id}),
        jwt.encode(
            {"sub": "u", "role": "r", "sid": "s", "jti": "j", "exp": 9999999999},
            "other-key-other-key-other-key-32",
            algorithm="HS256",
        ),
    ],
)
def test_bad_tokens_are_refused_with_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        decode_access_token(token, keys=RING)
    assert caught.value.code == "unauthorized"
    assert caught.value.status == 401


def test_previous_keys_still_verify_during_a_rotation(tmp_path: Path) -> None:
    old = Settings(_env_file=None, secret_key="old-key-old-key-old-key-old-key-old")  # type: ignore[call-arg]
    new = Settings(  # type: ignore[call-arg]
        _env_file=None,
        secret_key="new-key-new-key-new-key-new-key-new",
        previous_secret_keys="old-key-old-key-old-key-old-key-old",
    )
    old_ring, new_ring = load_key_ring(old), load_key_ring(new)
    token = issue_access_token(key=old_ring.current, user_id="u", role="customer", session_id="s")
    assert decode_access_token(token, keys=new_ring).user_id == "u"
    fresh = issue_access_token(key=new_ring.current, user_id="u", role="customer", session_id="s")
    with pytest.raises(Unauthorized):
        decode_access_token(fresh, keys=old_ring)
    assert new.redacted()["previous_secret_keys"] == ["**********"]


def test_unsigned_token_is_refused() -> None:
    token = jwt.encode(
        {"sub": "u", "role": "admin", "sid": "s", "jti": "j", "exp": 9999999999},
        None,
        algorithm="none",
    )
    with pytest.raises(Unauthorized):
        decode_access_token(token, keys=RING)


def test_password_hash_is_argon2id_and_verifies() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery staple")
    assert not verify_password(hashed, "wrong")
    assert not verify_password("not-a-hash", "anything")
    assert not needs_rehash(hashed)


async def test_password_hashing_off_the_loop() -> None:
    hashed = await hash_password_async("another long passphrase")
    assert await verify_password_async(hashed, "another long passphrase")
    assert not await verify_password_async(hashed, "nope")


def test_generated_signing_key_is_kept_and_private(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "var")  # type: ignore[call-arg]
    first = load_key_ring(settings)
    second = load_key_ring(settings)
    assert first == second
    assert len(first.current.value) >= 48
    key_file = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]


def test_configured_signing_key_wins(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "var", secret_key="configured-secret-configured-secret"
    )
    key = load_key_ring(settings).current
    assert key.value == "configured-secret-configured-secret"
    assert len(key.key_id) == 12
    assert not (tmp_path / "var").exists()
