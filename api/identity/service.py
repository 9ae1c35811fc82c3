"""Account services. The identity issue grows this module (register, login, reset, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from tortoise.exceptions import IntegrityError

from core.clock import utcnow
from core.errors import Conflict, ValidationFailed
from core.passwords import hash_password_async
from db.models.identity import Role, User

MIN_PASSWORD_LENGTH = 12


@dataclass(frozen=True, slots=True)
class Account:
    id: UUID
    email: str
    role: Role


def normalize_email(email: str) -> str:
    """Validate the address (syntax only, no DNS) and return its normalized, lower-case form."""
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed("invalid_email", str(exc), details={"field": "email"}) from None
    return result.normalized.lower()


def check_password_length(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            "weak_password",
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters",
            details={"field": "password"},
        )


async def create_superuser(*, email: str, password: str) -> Account:
    address = normalize_email(email)
    check_password_length(password)
    password_hash = await hash_password_async(password)
    try:
        user = await User.create(
            email=address,
            password_hash=password_hash,
            role=Role.SUPER_ADMIN,
            is_active=True,
            email_verified_at=utcnow(),
        )
    except IntegrityError:
        raise Conflict("email_taken", f"An account for {address} exists already") from None
    return Account(id=user.id, email=user.email, role=user.role)
