"""Accounts: register, verify the address, sign in, reset the password.

No account enumeration: sign-in answers the same for an unknown address and a wrong password
(and spends the same hashing time); reset and resend always answer "accepted". Failed sign-ins
back off per account and per client address through the shared rate limiter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from api.identity.emails import password_reset_email, verification_email
from api.identity.security_log import Client, SecurityKind, SecurityLog
from api.identity.sessions import SessionService, TokenPair
from core.clock import utcnow
from core.errors import Conflict, RateLimited, Unauthorized, ValidationFailed
from core.logs import get_logger
from core.mail import MailDeliveryError, Mailer, OutgoingEmail
from core.passwords import (
    burn_password_check,
    check_password_strength_async,
    hash_password_async,
    needs_rehash,
    verify_password_async,
)
from core.permissions import Role
from core.rate_limit import Limit, RateLimiter
from core.tokens import digest, new_opaque_token
from db.models.identity import OneTimeToken, TokenPurpose, User

log = get_logger(__name__)

VERIFY_TTL = timedelta(hours=48)
RESET_TTL = timedelta(minutes=30)
FAILURES_PER_ACCOUNT = Limit(count=5, window=15 * 60)
FAILURES_PER_ADDRESS = Limit(count=20, window=15 * 60)


@dataclass(frozen=True, slots=True)
class Account:
    id: UUID
    email: str
    role: Role


def normalize_email(email: str) -> str:
    """Validate the address (syntax only: no DNS from a request path) and lower-case it."""
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed("invalid_email", str(exc), details={"field": "email"}) from None
    return result.normalized.lower()


class AccountService:
    def __init__(
        self,
        *,
        sessions: SessionService,
        security_log: SecurityLog,
        mailer: Mailer,
        limiter: RateLimiter,
        public_url: str,
    ) -> None:
        self._sessions = sessions
        self._log = security_log
        self._mailer = mailer
        self._limiter = limiter
        self._public_url = public_url

    # -- registration and verification -------------------------------------------------------

    async def register(
        self, *, email: str, password: str, display_name: str, client: Client
    ) -> Account:
        address = normalize_email(email)
        await check_password_strength_async(password, user_inputs=[address, display_name])
        password_hash = await hash_password_async(password)
        token = new_opaque_token()
        try:
            async with in_transaction():
                user = await User.create(
                    email=address,
                    password_hash=password_hash,
                    display_name=display_name.strip(),
                    role=Role.CUSTOMER,
                )
                await self._one_time_token(user, TokenPurpose.VERIFY_EMAIL, token, VERIFY_TTL)
        except IntegrityError:
            raise Conflict("email_taken", "An account with this address exists") from None
        await self._log.record(SecurityKind.REGISTERED, client=client, user_id=user.id)
        await self._send(verification_email(to=address, link=self._link("verify-email", token)))
        return Account(id=user.id, email=user.email, role=user.role)

    async def verify_email(self, *, token: str, client: Client) -> Account:
        user = await self._spend(token, TokenPurpose.VERIFY_EMAIL)
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
            await user.save(update_fields=["email_verified_at", "updated_at"])
            await self._log.record(SecurityKind.EMAIL_VERIFIED, client=client, user_id=user.id)
        return Account(id=user.id, email=user.email, role=user.role)

    async def resend_verification(self, *, email: str) -> None:
        user = await User.get_or_none(email=normalize_email(email), is_active=True)
        if user is None or user.email_verified_at is not None:
            return
        token = new_opaque_token()
        await self._one_time_token(user, TokenPurpose.VERIFY_EMAIL, token, VERIFY_TTL)
        await self._send(verification_email(to=user.email, link=self._link("verify-email", token)))

    # -- sign-in -----------------------------------------------------------------------------

    async def login(self, *, email: str, password: str, client: Client) -> TokenPair:
        address = email.strip().lower()
        account_key = f"login-fail:acct:{digest(address)}"
        address_key = f"login-fail:ip:{client.ip}"
        for key, limit in (
            (account_key, FAILURES_PER_ACCOUNT),
            (address_key, FAILURES_PER_ADDRESS),
        ):
            decision = await self._limiter.peek(key, limit)
            if not decision.allowed:
                raise RateLimited(
                    "too_many_attempts",
                    "Too many failed sign-ins: try again later",
                    details={"retry_after": round(decision.retry_after)},
                )

        user = await User.get_or_none(email=address)
        if user is None or user.password_hash is None:
            await burn_password_check(password)
            valid = False
        else:
            valid = await verify_password_async(user.password_hash, password)

        if not valid or user is None or not user.is_active:
            await self._failed_login(address, user, client, account_key, address_key)
            raise Unauthorized("invalid_credentials", "The email or password is wrong")

        await self._limiter.reset(account_key)
        user.last_login_at = utcnow()
        fields = ["last_login_at", "updated_at"]
        if user.password_hash and needs_rehash(user.password_hash):
            user.password_hash = await hash_password_async(password)
            fields.append("password_hash")
        await user.save(update_fields=fields)
        pair = await self._sessions.start(user=user, client=client)
        await self._log.record(
            SecurityKind.LOGIN_SUCCEEDED,
            client=client,
            user_id=user.id,
            data={"session_id": str(pair.session_id)},
        )
        return pair

    async def _failed_login(
        self, address: str, user: User | None, client: Client, account_key: str, address_key: str
    ) -> None:
        account = await self._limiter.hit(account_key, FAILURES_PER_ACCOUNT)
        by_address = await self._limiter.hit(address_key, FAILURES_PER_ADDRESS)
        user_id = user.id if user is not None else None
        reason = "suspended" if user is not None and not user.is_active else "bad_credentials"
        await self._log.record(
            SecurityKind.LOGIN_FAILED,
            client=client,
            user_id=user_id,
            email=address,
            data={"reason": reason},
        )
        if account.remaining == 0 or by_address.remaining == 0:
            await self._log.record(
                SecurityKind.LOCKED_OUT,
                client=client,
                user_id=user_id,
                email=address,
                data={"scope": "account" if account.remaining == 0 else "address"},
            )

    # -- password reset ----------------------------------------------------------------------

    async def request_password_reset(self, *, email: str, client: Client) -> None:
        user = await User.get_or_none(email=normalize_email(email), is_active=True)
        if user is None:
            return
        token = new_opaque_token()
        await self._one_time_token(user, TokenPurpose.RESET_PASSWORD, token, RESET_TTL)
        await self._log.record(
            SecurityKind.PASSWORD_RESET_REQUESTED, client=client, user_id=user.id
        )
        await self._send(
            password_reset_email(to=user.email, link=self._link("reset-password", token))
        )

    async def confirm_password_reset(self, *, token: str, password: str, client: Client) -> None:
        user = await self._peek(token, TokenPurpose.RESET_PASSWORD)
        await check_password_strength_async(password, user_inputs=[user.email, user.display_name])
        password_hash = await hash_password_async(password)
        async with in_transaction():
            user = await self._spend(token, TokenPurpose.RESET_PASSWORD)
            user.password_hash = password_hash
            await user.save(update_fields=["password_hash", "updated_at"])
            # Other reset links die with this one; so does every session.
            await OneTimeToken.filter(
                user_id=user.id, purpose=TokenPurpose.RESET_PASSWORD, used_at__isnull=True
            ).update(used_at=utcnow())
            revoked = await self._sessions.revoke_all(user_id=user.id, reason="password_reset")
        await self._log.record(
            SecurityKind.PASSWORD_RESET,
            client=client,
            user_id=user.id,
            data={"sessions_revoked": revoked},
        )

    # -- one-time tokens ---------------------------------------------------------------------

    async def _one_time_token(
        self, user: User, purpose: TokenPurpose, token: str, ttl: timedelta
    ) -> None:
        await OneTimeToken.create(
            user=user, purpose=purpose, token_hash=digest(token), expires_at=utcnow() + ttl
        )

    async def _peek(self, token: str, purpose: TokenPurpose) -> User:
        row = (
            await OneTimeToken.filter(
                token_hash=digest(token),
                purpose=purpose,
                used_at__isnull=True,
                expires_at__gt=utcnow(),
            )
            .select_related("user")
            .first()
        )
        if row is None or not row.user.is_active:
            raise ValidationFailed("invalid_token", "This link is invalid or has expired")
        return row.user

    async def _spend(self, token: str, purpose: TokenPurpose) -> User:
        """Mark the token used, atomically: of two concurrent uses exactly one wins."""
        user = await self._peek(token, purpose)
        spent = await OneTimeToken.filter(
            token_hash=digest(token), purpose=purpose, used_at__isnull=True
        ).update(used_at=utcnow())
        if spent != 1:
            raise ValidationFailed("invalid_token", "This link is invalid or has expired")
        return user

    def _link(self, page: str, token: str) -> str:
        return f"{self._public_url}/{page}?token={token}"

    async def _send(self, email: OutgoingEmail) -> None:
        try:
            await self._mailer.send(email)
        except (MailDeliveryError, OSError) as exc:
            # The account change stands; the user can ask for the mail again.
            log.error("identity.mail_failed", error=str(exc), subject=email.subject)


async def create_superuser(*, email: str, password: str) -> Account:
    """For the command line: an operator's account, verified, with the top role."""
    address = normalize_email(email)
    await check_password_strength_async(password, user_inputs=[address])
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
