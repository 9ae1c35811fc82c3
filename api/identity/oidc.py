"""The OpenID Connect side of sign-in: one `OpenIDProvider` per configured provider.

It speaks the authorization code flow through authlib's async client (on httpx2, authlib's
maintained HTTP client) and checks ID tokens with joserfc. The provider's discovery document
and key set are public, so each process caches them for `cache_ttl`; an ID token signed with
a key id the cache does not know triggers one early refetch of the key set (the provider has
rotated), at most once per `KEYS_REFETCH_INTERVAL` so forged key ids cannot make us hammer it.

Endpoints must be https. Plain http is accepted for a loopback host only (`is_loopback_host`):
that traffic never leaves the machine, and the tests run their provider there.

authlib, httpx2 and joserfc (~3.5 MB of RSS together) are imported by `OpenIDProvider`'s
methods, not with this module: a service with no provider configured never loads them.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import AppError
from core.settings import OAUTH_PROVIDERS, Settings, is_loopback_host

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

SCOPE = "openid email profile"
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
CLOCK_LEEWAY = 60  # seconds of clock skew tolerated on exp and iat
KEYS_REFETCH_INTERVAL = 60.0  # seconds between two early refetches of a key set
CACHE_TTL = 3600.0
TIMEOUT = 10.0
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")  # in order of preference
TENANT_PLACEHOLDER = "{tenantid}"
_TENANT_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Google's ID tokens may carry the issuer without its scheme (documented by Google).
LEGACY_ISSUERS = {"https://accounts.google.com": ("accounts.google.com",)}


# -- errors ----------------------------------------------------------------------------------


class OAuthFailure(AppError):
    """A sign-in through a provider that did not succeed. `reason` goes to the security log
    only; the browser is sent back to the sign-in page with `code` (`back_to_sign_in`), except
    for requests no provider would have produced, which get a plain error response."""

    status = 400
    default_code = "oauth_failed"
    default_message = "Sign-in with the provider failed"
    back_to_sign_in: ClassVar[bool] = True

    def __init__(
        self,
        reason: str,
        message: str | None = None,
        *,
        email: str = "",
        user_id: UUID | None = None,
    ) -> None:
        super().__init__(None, message)
        self.reason = reason
        self.email = email
        self.user_id = user_id


class OAuthProviderUnknown(OAuthFailure):
    status = 404
    default_code = "oauth_provider_unknown"
    default_message = "No such sign-in provider, or it is not enabled"
    back_to_sign_in = False


class InvalidNext(OAuthFailure):
    status = 422
    default_code = "invalid_next"
    default_message = "`next` must be a path on this site, such as /portal"
    back_to_sign_in = False


class OAuthStateMismatch(OAuthFailure):
    status = 400
    default_code = "oauth_state_mismatch"
    default_message = "The sign-in expired or did not start here: start again"


class OAuthTokenInvalid(OAuthFailure):
    status = 401
    default_code = "oauth_token_invalid"
    default_message = "The provider's ID token did not pass the checks"


class OAuthEmailUnverified(OAuthFailure):
    status = 403
    default_code = "oauth_email_unverified"
    default_message = "The provider did not confirm that the email address is verified"


class OAuthAccountSuspended(OAuthFailure):
    status = 403
    default_code = "oauth_account_suspended"
    default_message = "This account is suspended"


class OAuthProviderError(OAuthFailure):
    status = 502
    default_code = "oauth_provider_error"
    default_message = "The sign-in provider could not complete the sign-in"


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderProfile:
    """What differs between providers beyond their discovery document."""

    label: str
    # Client authentication when discovery lists none (the spec's default is basic; LinkedIn
    # takes the credentials in the body only).
    default_client_auth: str = "client_secret_basic"
    # Claims that say the address is verified. Microsoft's ID tokens carry no email_verified;
    # its optional claim xms_edov ("email domain owner verified") is the equivalent.
    verified_email_claims: tuple[str, ...] = ("email_verified",)


PROFILES: Mapping[str, ProviderProfile] = {
    "google": ProviderProfile(label="Google"),
    "microsoft": ProviderProfile(
        label="Microsoft", verified_email_claims=("email_verified", "xms_edov")
    ),
    "linkedin": ProviderProfile(label="LinkedIn", default_client_auth="client_secret_post"),
}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    client_id: str
    client_secret: str = field(repr=False)
    discovery_url: str

    @property
    def profile(self) -> ProviderProfile:
        return PROFILES[self.name]


def provider_configs(settings: Settings) -> tuple[ProviderConfig, ...]:
    """The enabled providers: those whose client id is set (settings insist on the secret)."""
    configs = []
    for name in OAUTH_PROVIDERS:
        client_id: str | None = getattr(settings, f"oauth_{name}_client_id")
        secret = getattr(settings, f"oauth_{name}_client_secret")
        if client_id is None or secret is None:
            continue
        configs.append(
            ProviderConfig(
                name=name,
                client_id=client_id,
                client_secret=secret.get_secret_value(),
                discovery_url=getattr(settings, f"oauth_{name}_discovery_url"),
            )
        )
    return tuple(configs)


def check_endpoint(url: str) -> str:
    """https, or http to a loopback host; anything else is the provider's error."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname or ""):
        return url
    raise OAuthProviderError("insecure_endpoint")


class ProviderMetadata(BaseModel):
    """The part of a discovery document we use (OpenID Connect Discovery 1.0, section 3)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    token_endpoint_auth_methods_supported: list[str] | None = None

    def check_endpoints(self) -> None:
        for url in (self.authorization_endpoint, self.token_endpoint, self.jwks_uri):
            check_endpoint(url)
        if self.userinfo_endpoint:
            check_endpoint(self.userinfo_endpoint)


def expected_issuers(issuer: str, claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The `iss` values an ID token may carry. Microsoft's multi-tenant endpoints publish an
    issuer template with `{tenantid}`; each token names its tenant in `tid`, which must then
    give exactly its `iss`."""
    if TENANT_PLACEHOLDER in issuer:
        tenant = claims.get("tid")
        if not isinstance(tenant, str) or not _TENANT_ID.match(tenant):
            return ()
        return (issuer.replace(TENANT_PLACEHOLDER, tenant),)
    return (issuer, *LEGACY_ISSUERS.get(issuer, ()))


def is_true(value: object) -> bool:
    """A boolean claim; some providers send it as the string "true"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- one provider ----------------------------------------------------------------------------


class OpenIDProvider:
    def __init__(
        self,
        config: ProviderConfig,
        *,
        redirect_uri: str,
        timeout: float = TIMEOUT,
        cache_ttl: float = CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import httpx2
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        self.config = config
        self.redirect_uri = redirect_uri
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        # Never follow redirects: every URL we call comes from the settings or the
        # provider's discovery document, and was checked.
        self._http = AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=config.client_secret,
            scope=SCOPE,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=httpx2.Timeout(timeout),
            follow_redirects=False,
        )

    @property
    def name(self) -> str:
        return self.config.name

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- discovery and keys, cached ----------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        async with self._lock:
            if self._metadata is None or self._stale(self._metadata_at, self._cache_ttl):
                raw = await self._get_json(check_endpoint(self.config.discovery_url))
                try:
                    metadata = ProviderMetadata.model_validate(raw)
                except ValidationError:
                    raise OAuthProviderError("discovery_malformed") from None
                metadata.check_endpoints()
                self._metadata, self._metadata_at = metadata, self._clock()
                self._keys = None  # the key set may have moved with the document
            return self._metadata

    async def keys(self, *, refetch: bool = False) -> KeySet:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        metadata = await self.metadata()
        async with self._lock:
            fresh = self._keys is not None and not self._stale(self._keys_at, self._cache_ttl)
            throttled = not self._stale(self._keys_at, KEYS_REFETCH_INTERVAL)
            if self._keys is None or not fresh or (refetch and not throttled):
                raw = await self._get_json(metadata.jwks_uri)
                try:
                    self._keys = KeySet.import_key_set(raw)  # type: ignore[arg-type]
                except (JoseError, KeyError, TypeError, ValueError):
                    raise OAuthProviderError("jwks_malformed") from None
                self._keys_at = self._clock()
            return self._keys

    def _stale(self, fetched_at: float, ttl: float) -> bool:
        return self._clock() - fetched_at >= ttl

    async def _get_json(self, url: str, *, bearer: str | None = None) -> dict[str, Any]:
        import httpx2

        headers = {"Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            response = await self._http.request("GET", url, headers=headers, withhold_token=True)
        except httpx2.HTTPError:
            raise OAuthProviderError("unreachable") from None
        if response.status_code != 200:
            raise OAuthProviderError(f"http_{response.status_code}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise OAuthProviderError("not_json")
        return data

    # -- the flow ----------------------------------------------------------------------------

    def authorization_url(
        self, metadata: ProviderMetadata, *, state: str, nonce: str, code_verifier: str
    ) -> str:
        url, _ = self._http.create_authorization_url(
            metadata.authorization_endpoint,
            state=state,
            code_verifier=code_verifier,
            nonce=nonce,
            response_type="code",
        )
        return str(url)

    def _client_auth_method(self, metadata: ProviderMetadata) -> str:
        supported = metadata.token_endpoint_auth_methods_supported or [
            self.config.profile.default_client_auth
        ]
        for method in CLIENT_AUTH_METHODS:
            if method in supported:
                return method
        raise OAuthProviderError("no_supported_client_auth")

    async def exchange_code(
        self, metadata: ProviderMetadata, *, code: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token endpoint's answer to the code (with the PKCE verifier)."""
        import httpx2
        from authlib.integrations.httpx_client import OAuthError

        auth = self._http.client_auth(self._client_auth_method(metadata))
        try:
            token = await self._http.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=self.redirect_uri,
                auth=auth,
            )
        except OAuthError as exc:
            raise OAuthProviderError(f"token_refused:{str(exc.error)[:40]}") from None
        except httpx2.HTTPError:
            raise OAuthProviderError("token_endpoint_unreachable") from None
        except ValueError:
            raise OAuthProviderError("token_response_malformed") from None
        return dict(token)

    async def userinfo(self, metadata: ProviderMetadata, *, access_token: str) -> dict[str, Any]:
        if not metadata.userinfo_endpoint:
            return {}
        return await self._get_json(metadata.userinfo_endpoint, bearer=access_token)

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Signature against the provider's keys, then iss, aud (and azp), exp, iat, nonce."""
        from joserfc.errors import InvalidKeyIdError

        metadata = await self.metadata()
        try:
            claims = _decode(id_token, await self.keys())
        except InvalidKeyIdError:
            try:
                claims = _decode(id_token, await self.keys(refetch=True))
            except InvalidKeyIdError:
                raise OAuthTokenInvalid("unknown_key") from None
        self._check_claims(claims, metadata=metadata, nonce=nonce)
        return claims

    def _check_claims(
        self, claims: dict[str, Any], *, metadata: ProviderMetadata, nonce: str
    ) -> None:
        from joserfc import jwt
        from joserfc.errors import ClaimError, ExpiredTokenError

        client_id = self.config.client_id
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY,
            sub={"essential": True},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise OAuthTokenInvalid("expired") from None
        except ClaimError as exc:
            raise OAuthTokenInvalid(f"claim_{exc.claim}") from None
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in expected_issuers(metadata.issuer, claims):
            raise OAuthTokenInvalid("issuer_mismatch")
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
            raise OAuthTokenInvalid("claim_azp")
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, nonce):
            raise OAuthTokenInvalid("nonce_mismatch")


def _decode(id_token: str, keys: KeySet) -> dict[str, Any]:
    """Verify the signature; InvalidKeyIdError is left to the caller (it may refetch)."""
    from joserfc import jwt
    from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError

    try:
        token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
    except InvalidKeyIdError:
        raise
    except BadSignatureError:
        raise OAuthTokenInvalid("bad_signature") from None
    except (JoseError, ValueError, TypeError):
        raise OAuthTokenInvalid("malformed") from None
    return dict(token.claims)
