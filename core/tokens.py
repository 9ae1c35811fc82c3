"""Access tokens: short-lived JWTs (HS256) checked by the API and the Socket.IO handshake.

The identity issue builds sessions and refresh tokens on top; the claims are fixed here:
`sub` (user id), `role`, `sid` (session id), `jti`, `iat`, `exp`, and the key id in the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from core.clock import utcnow
from core.errors import Unauthorized
from core.ids import new_id_str

ALGORITHM = "HS256"
ACCESS_TOKEN_TTL = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    role: str
    session_id: str
    token_id: str
    expires_at: datetime


def issue_access_token(
    *,
    key: str,
    key_id: str,
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
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": key_id})


def decode_access_token(token: str, *, key: str) -> AccessClaims:
    """Verify signature and expiry; raise `Unauthorized` with `token_expired` or `unauthorized`."""
    try:
        claims = jwt.decode(
            token,
            key,
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
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo),
    )
