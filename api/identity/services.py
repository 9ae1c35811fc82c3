"""The identity services, built once per app from its resources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.identity.accounts import AccountService
from api.identity.admin import AdminService
from api.identity.api_keys import ApiKeyService
from api.identity.oauth import OAuthService
from api.identity.oidc import ProviderConfig
from api.identity.security_log import SecurityLog
from api.identity.sessions import SessionService
from core.bus import EventBus
from core.mail import Mailer
from core.rate_limit import RateLimiter
from core.tokens import KeyRing


@dataclass(frozen=True, slots=True)
class IdentityServices:
    security_log: SecurityLog
    sessions: SessionService
    accounts: AccountService
    api_keys: ApiKeyService
    admin: AdminService
    oauth: OAuthService


def build_identity(
    *,
    keys: KeyRing,
    bus: EventBus,
    mailer: Mailer,
    limiter: RateLimiter,
    public_url: str,
    oauth_providers: Sequence[ProviderConfig] = (),
) -> IdentityServices:
    security_log = SecurityLog(bus)
    sessions = SessionService(keys=keys, security_log=security_log)
    return IdentityServices(
        security_log=security_log,
        sessions=sessions,
        accounts=AccountService(
            sessions=sessions,
            security_log=security_log,
            mailer=mailer,
            limiter=limiter,
            public_url=public_url,
        ),
        api_keys=ApiKeyService(security_log=security_log),
        admin=AdminService(sessions=sessions, security_log=security_log),
        oauth=OAuthService(
            providers=oauth_providers,
            keys=keys,
            sessions=sessions,
            security_log=security_log,
            public_url=public_url,
        ),
    )
