"""Sign-in with Google, Microsoft and LinkedIn (OpenID Connect, authorization code + PKCE).

Nothing is stored server-side while the browser is at the provider: `start` puts the state,
nonce, PKCE verifier, provider and return path in a short-lived JWT (the "flow"), signed with
the app's key ring, that the browser keeps in an HttpOnly cookie; `finish` believes only what
that signature covers. The provider's identity then maps to a local account: a linked
(provider, subject) signs its user in; otherwise an account with the same address is linked,
which needs the provider to vouch that the address is verified (we require that always);
otherwise a new verified customer account without a password is created.

Every failure is logged as `oauth_failed` with its reason, and nothing is written.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import jwt
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from api.identity.accounts import normalize_email
from api.identity.oidc import (
    InvalidNext,
    OAuthAccountSuspended,
    OAuthEmailUnverified,
    OAuthFailure,
    OAuthProviderError,
    OAuthProviderUnknown,
    OAuthStateMismatch,
    OAuthTokenInvalid,
    OpenIDProvider,
    ProviderConfig,
    is_true,
)
from api.identity.security_log import Client, SecurityKind, SecurityLog
from api.identity.sessions import SessionService, TokenPair
from core.clock import utcnow
from core.errors import ValidationFailed
from core.permissions import Role
from core.tokens import ALGORITHM, KeyRing
from db.models.identity import OAuthAccount, User

FLOW_TTL = timedelta(minutes=10)
FLOW_AUDIENCE = "ideinstein:oauth-flow"  # so no other token we sign passes as a flow
CALLBACK_PATH = "/api/v1/auth/oauth/{provider}/callback"
MAX_NEXT_LENGTH = 2000
MAX_CODE_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class OAuthStart:
    url: str  # where to send the browser
    flow: str  # keep client-side (the flow cookie) until the callback
    max_age: int


@dataclass(frozen=True, slots=True)
class Flow:
    provider: str
    state: str
    nonce: str
    code_verifier: str
    next_path: str


class Outcome(StrEnum):
    SIGNED_IN = "signed_in"
    LINKED = "linked"
    CREATED = "created"


@dataclass(frozen=True, slots=True)
class Resolved:
    user: User
    outcome: Outcome
    password_cleared: bool = False


@dataclass(frozen=True, slots=True)
class OAuthSignIn:
    pair: TokenPair
    next_path: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    subject: str
    email: str
    display_name: str


def check_next_path(value: str) -> str:
    """A path on this site (`/portal?tab=files`), never a URL a browser could read as another
    host: no scheme, no `//host`, no backslashes or control characters (browsers fold them)."""
    if not value:
        return "/"
    unsafe = any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value) or "\\" in value
    if (
        len(value) > MAX_NEXT_LENGTH
        or unsafe
        or not value.startswith("/")
        or value.startswith("//")
    ):
        raise InvalidNext("invalid_next")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        raise InvalidNext("invalid_next")
    return value


class OAuthService:
    def __init__(
        self,
        *,
        providers: Sequence[ProviderConfig],
        keys: KeyRing,
        sessions: SessionService,
        security_log: SecurityLog,
        public_url: str,
    ) -> None:
        self._keys = keys
        self._sessions = sessions
        self._log = security_log
        self._providers = {
            config.name: OpenIDProvider(
                config, redirect_uri=public_url + CALLBACK_PATH.format(provider=config.name)
            )
            for config in providers
        }

    @property
    def enabled(self) -> list[ProviderConfig]:
        return [provider.config for provider in self._providers.values()]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()

    def _provider(self, name: str) -> OpenIDProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise OAuthProviderUnknown("provider_unknown")
        return provider

    # -- start -------------------------------------------------------------------------------

    async def start(self, *, provider: str, next_path: str, client: Client) -> OAuthStart:
        try:
            return await self._start(provider, next_path)
        except OAuthFailure as exc:
            await self._record_failure(exc, provider=provider, client=client, stage="start")
            raise

    async def _start(self, name: str, next_path: str) -> OAuthStart:
        provider = self._provider(name)
        flow = Flow(
            provider=name,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 characters, within RFC 7636's 43-128
            next_path=check_next_path(next_path),
        )
        metadata = await provider.metadata()
        await provider.keys()  # warm the cache now rather than during the callback
        url = provider.authorization_url(
            metadata, state=flow.state, nonce=flow.nonce, code_verifier=flow.code_verifier
        )
        return OAuthStart(
            url=url, flow=self._sign_flow(flow), max_age=int(FLOW_TTL.total_seconds())
        )

    def _sign_flow(self, flow: Flow) -> str:
        now = utcnow()
        claims = {
            "aud": FLOW_AUDIENCE,
            "prv": flow.provider,
            "st": flow.state,
            "non": flow.nonce,
            "pkv": flow.code_verifier,
            "nxt": flow.next_path,
            "iat": int(now.timestamp()),
            "exp": int((now + FLOW_TTL).timestamp()),
        }
        key = self._keys.current
        return jwt.encode(claims, key.value, algorithm=ALGORITHM, headers={"kid": key.key_id})

    def _read_flow(self, token: str | None) -> Flow:
        if not token:
            raise OAuthStateMismatch("flow_missing")
        try:
            key_id = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise OAuthStateMismatch("flow_invalid") from None
        key = self._keys.find(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise OAuthStateMismatch("flow_invalid")
        try:
            claims = jwt.decode(
                token,
                key.value,
                algorithms=[ALGORITHM],
                audience=FLOW_AUDIENCE,
                options={"require": ["exp", "iat", "aud", "prv", "st", "non", "pkv", "nxt"]},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthStateMismatch("flow_expired") from None
        except jwt.InvalidTokenError:
            raise OAuthStateMismatch("flow_invalid") from None
        return Flow(
            provider=str(claims["prv"]),
            state=str(claims["st"]),
            nonce=str(claims["non"]),
            code_verifier=str(claims["pkv"]),
            next_path=str(claims["nxt"]),
        )

    # -- finish ------------------------------------------------------------------------------

    async def finish(
        self,
        *,
        provider: str,
        code: str | None,
        state: str | None,
        flow_cookie: str | None,
        client: Client,
        provider_error: str | None = None,
    ) -> OAuthSignIn:
        """The callback: check the flow, redeem the code, check the ID token, sign in."""
        try:
            return await self._finish(provider, code, state, flow_cookie, client, provider_error)
        except OAuthFailure as exc:
            await self._record_failure(exc, provider=provider, client=client, stage="callback")
            raise

    async def _finish(
        self,
        name: str,
        code: str | None,
        state: str | None,
        flow_cookie: str | None,
        client: Client,
        provider_error: str | None,
    ) -> OAuthSignIn:
        provider = self._provider(name)
        flow = self._read_flow(flow_cookie)
        if flow.provider != name:
            raise OAuthStateMismatch("flow_of_another_provider")
        if not state or not hmac.compare_digest(state.encode(), flow.state.encode()):
            raise OAuthStateMismatch("state_mismatch")
        if provider_error:
            raise OAuthProviderError(f"provider_said:{provider_error[:40]}")
        if not code or len(code) > MAX_CODE_LENGTH:
            raise OAuthProviderError("no_code")
        next_path = check_next_path(flow.next_path)
        identity = await self._identity(provider, code=code, flow=flow)
        resolved = await self._account(name, identity)
        return await self._sign_in(name, resolved, client, next_path)

    async def _identity(
        self, provider: OpenIDProvider, *, code: str, flow: Flow
    ) -> ProviderIdentity:
        metadata = await provider.metadata()
        token = await provider.exchange_code(metadata, code=code, code_verifier=flow.code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OAuthTokenInvalid("no_id_token")
        claims = await provider.verify_id_token(id_token, nonce=flow.nonce)
        source = claims
        verified_claims = provider.config.profile.verified_email_claims
        says = any(name in claims for name in verified_claims)
        if not (isinstance(claims.get("email"), str) and says):
            access_token = token.get("access_token")
            if isinstance(access_token, str) and metadata.userinfo_endpoint:
                source = await provider.userinfo(metadata, access_token=access_token)
                if source.get("sub") != claims["sub"]:
                    raise OAuthTokenInvalid("userinfo_subject_mismatch")
        email = source.get("email")
        if not isinstance(email, str) or not email:
            raise OAuthEmailUnverified("no_email")
        if not any(is_true(source.get(name)) for name in verified_claims):
            raise OAuthEmailUnverified("email_unverified", email=email[:320])
        try:
            address = normalize_email(email)
        except ValidationFailed:
            raise OAuthProviderError("invalid_email", email=email[:320]) from None
        name = source.get("name") or claims.get("name")
        return ProviderIdentity(
            subject=str(claims["sub"]),
            email=address,
            display_name=name.strip()[:120] if isinstance(name, str) else "",
        )

    # -- accounts ----------------------------------------------------------------------------

    async def _account(self, provider: str, identity: ProviderIdentity) -> Resolved:
        """Find, link or create; a concurrent callback for the same identity or address loses
        on the unique constraints and then finds what the winner wrote."""
        try:
            return await self._find_or_create(provider, identity)
        except IntegrityError:
            return await self._find_or_create(provider, identity)

    async def _find_or_create(self, provider: str, identity: ProviderIdentity) -> Resolved:
        link = (
            await OAuthAccount.filter(provider=provider, subject=identity.subject)
            .select_related("user")
            .first()
        )
        if link is not None:
            self._check_active(link.user, identity)
            return Resolved(user=link.user, outcome=Outcome.SIGNED_IN)
        existing = await User.get_or_none(email=identity.email)
        if existing is not None:
            self._check_active(existing, identity)
            cleared = await self._link(existing, provider, identity)
            return Resolved(user=existing, outcome=Outcome.LINKED, password_cleared=cleared)
        async with in_transaction():
            user = await User.create(
                email=identity.email,
                password_hash=None,
                display_name=identity.display_name,
                role=Role.CUSTOMER,
                email_verified_at=utcnow(),
            )
            await OAuthAccount.create(
                user=user, provider=provider, subject=identity.subject, email=identity.email
            )
        return Resolved(user=user, outcome=Outcome.CREATED)

    @staticmethod
    def _check_active(user: User, identity: ProviderIdentity) -> None:
        if not user.is_active:
            raise OAuthAccountSuspended("suspended", email=identity.email, user_id=user.id)

    async def _link(self, user: User, provider: str, identity: ProviderIdentity) -> bool:
        """Link the provider's identity to the account with its (verified) address. If that
        account never proved the address, whoever set its password may not be its owner
        (account pre-hijacking): the password and any sessions go, the address counts as
        verified from now on."""
        async with in_transaction():
            await OAuthAccount.create(
                user=user, provider=provider, subject=identity.subject, email=identity.email
            )
            if user.email_verified_at is not None:
                return False
            user.email_verified_at = utcnow()
            user.password_hash = None
            await user.save(update_fields=["email_verified_at", "password_hash", "updated_at"])
            await self._sessions.revoke_all(user_id=user.id, reason="oauth_link")
        return True

    async def _sign_in(
        self, provider: str, resolved: Resolved, client: Client, next_path: str
    ) -> OAuthSignIn:
        user, outcome = resolved.user, resolved.outcome
        user.last_login_at = utcnow()
        await user.save(update_fields=["last_login_at", "updated_at"])
        pair = await self._sessions.start(user=user, client=client)
        data: dict[str, Any] = {"provider": provider, "method": "oauth"}
        if outcome is Outcome.CREATED:
            await self._log.record(
                SecurityKind.REGISTERED, client=client, user_id=user.id, data=data
            )
        elif outcome is Outcome.LINKED:
            await self._log.record(
                SecurityKind.OAUTH_LINKED,
                client=client,
                user_id=user.id,
                data={**data, "password_cleared": resolved.password_cleared},
            )
        await self._log.record(
            SecurityKind.LOGIN_SUCCEEDED,
            client=client,
            user_id=user.id,
            data={**data, "session_id": str(pair.session_id)},
        )
        return OAuthSignIn(pair=pair, next_path=next_path, outcome=outcome)

    async def _record_failure(
        self, exc: OAuthFailure, *, provider: str, client: Client, stage: str
    ) -> None:
        await self._log.record(
            SecurityKind.OAUTH_FAILED,
            client=client,
            user_id=exc.user_id,
            email=exc.email,
            data={
                "provider": provider[:40],
                "stage": stage,
                "code": exc.code,
                "reason": exc.reason,
            },
        )
