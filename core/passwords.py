"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile).

Hashing costs tens of milliseconds of CPU: async callers run it in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.errors import ValidationFailed

_hasher = PasswordHasher()  # stateless and thread-safe: parameters only, no configuration


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("an unused password that only costs time")


async def burn_password_check(password: str) -> None:
    """Spend what a real check costs, so an unknown account answers as slowly as a known one."""
    dummy = await asyncio.to_thread(_dummy_hash)
    await verify_password_async(dummy, password)


MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MIN_STRENGTH_SCORE = 3  # zxcvbn: 0 (guessable) .. 4 (very unguessable)


def check_password_strength(password: str, *, user_inputs: Sequence[str] = ()) -> None:
    """Length first (cheap), then zxcvbn's estimate with the user's own words as a dictionary."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            "weak_password",
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters",
            details={"field": "password"},
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            "password_too_long",
            f"The password may have at most {MAX_PASSWORD_LENGTH} characters",
            details={"field": "password"},
        )
    # The user's own words, whole and in pieces, count as a dictionary ("ada.lovelace" ->
    # "adalovelace", "ada", "lovelace"); zxcvbn's cost grows with length, and the first 100
    # characters decide the score anyway.
    words: set[str] = set()
    for value in user_inputs:
        for part in value.lower().split("@"):
            pieces = [p for p in re.split(r"[^0-9a-z]+", part) if p]
            words.update(pieces)
            words.add("".join(pieces))
    # Imported at the first check, not with the service: zxcvbn builds its ranked dictionaries
    # (~12 MB) on import, which a process that never sets a password does not need.
    from zxcvbn import zxcvbn

    result = zxcvbn(password[:100], user_inputs=sorted(w for w in words if len(w) > 2))
    if result["score"] < MIN_STRENGTH_SCORE:
        feedback = result["feedback"]
        hint = feedback.get("warning") or " ".join(feedback.get("suggestions", []))
        message = "The password is too easy to guess"
        raise ValidationFailed(
            "weak_password",
            f"{message}: {hint}" if hint else message,
            details={"field": "password", "score": result["score"]},
        )


async def check_password_strength_async(password: str, *, user_inputs: Sequence[str] = ()) -> None:
    """`check_password_strength` in a thread: zxcvbn is a few milliseconds of pure CPU."""
    await asyncio.to_thread(check_password_strength, password, user_inputs=user_inputs)
