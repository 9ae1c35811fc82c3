"""Token primitives: access JWTs (HS256, key id in the header) and opaque random secrets.

Access token claims: `sub` (user id), `role`, `sid` (session id), `jti`, `iat`, `exp`. The
key ring verifies tokens signed by the current key or by a previous one during a rotation;
an unknown key id is refused. Opaque tokens (refresh tokens, one-time links, API keys) are
random and stored only as their SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from core.clock import utcnow
from core.errors import Unauthorized
from core.ids import new_id_str

ALGORITHM = "HS256"
ACCESS_TOKEN_TTL = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class SigningKey:
    value: str
    key_id: str  # a short fingerprint, so tokens name the key that signed them


@dataclass(frozen=True, slots=True)
class KeyRing:
    current: SigningKey
    previous: tuple[SigningKey, ...] = ()

    def find(self, key_id: str) -> SigningKey | None:
        for key in (self.current, *self.previous):
            if hmac.compare_digest(key.key_id, key_id):
                return key
        return None


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def signing_key(value: str) -> SigningKey:
    return SigningKey(value=value, key_id=fingerprint(value))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    role: str
    session_id: str
    token_id: str
    expires_at: datetime


def issue_access_token(
    *,
    key: SigningKey,
    user_id: str,
    role: str,
    session_id: str,
    ttl: timedelta = ACCESS_TOKEN_TTL,
    now: datetime | None = None,
) -> str:
    issued = now or utcnow()
    claims = {
        "sub": user_id,
        "role": role,
        "sid": session_id,
        "jti": new_id_str(),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    return jwt.encode(claims, key.value, algorithm=ALGORITHM, headers={"kid": key.key_id})


def decode_access_token(token: str, *, keys: KeyRing) -> AccessClaims:
    """Verify key id, signature and expiry; raise `Unauthorized` (`token_expired` or
    `unauthorized`). Only HS256 is accepted, so `alg: none` and algorithm swaps fail."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthorized("unauthorized", "The access token is invalid") from None
    key_id = header.get("kid")
    key = keys.find(key_id) if isinstance(key_id, str) else None
    if key is None:
        raise Unauthorized("unauthorized", "The access token is invalid")
    try:
        claims = jwt.decode(
            token,
            key.value,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "role", "sid", "jti", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token_expired", "The access token has expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("unauthorized", "The access token is invalid") from None
    return AccessClaims(
        user_id=str(claims["sub"]),
        role=str(claims["role"]),
        session_id=str(claims["sid"]),
        token_id=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
    )


def new_opaque_token(prefix: str = "", nbytes: int = 32) -> str:
    """A random secret (256 bits by default), URL-safe, with an optional readable prefix."""
    return prefix + secrets.token_urlsafe(nbytes)


def digest(token: str) -> str:
    """What is stored of an opaque token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()
