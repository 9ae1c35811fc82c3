"""Sign-in with OpenID providers end to end: the app against a protocol-faithful provider on
127.0.0.1, configured in turn as Google, Microsoft (tenant-templated issuer) and LinkedIn
(client credentials in the body only), on both databases.

The test plays the browser by hand, following no redirects: start -> the provider's authorize
URL -> its redirect back -> the callback with the flow cookie.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from api.app import create_app
from api.identity.oidc import (
    CACHE_TTL,
    KEYS_REFETCH_INTERVAL,
    OAuthTokenInvalid,
    OpenIDProvider,
    ProviderConfig,
)
from core.clock import utcnow
from core.settings import OAUTH_PROVIDERS, Settings
from db.connection import open_database
from db.models.identity import AuthSession, OAuthAccount, SecurityEvent, User
from tests.conftest import SettingsFactory, from_address
from tests.fakes.oidc_provider import FakeOpenIDProvider, Identity

Client = TestClient[Any, Any]
Response = aiohttp.ClientResponse
NEXT = "/portal/files?tab=recent"
EMAIL = "grace@example.com"


@functools.cache
def rsa_key(n: int) -> RSAPrivateKey:
    """Generated in the test (2048 bits); `n` tells keys apart, each made once per run."""
    del n
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=OAUTH_PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def idp(aiohttp_server: Any, provider: str) -> FakeOpenIDProvider:
    fake = FakeOpenIDProvider(
        client_id=f"{provider}-client-id",
        client_secret=f"{provider}-client-secret-0123456789",
        key=rsa_key(0),
        tenant_issuer=provider == "microsoft",
        # LinkedIn takes the credentials in the body only and its discovery does not say so.
        auth_methods=("client_secret_post",)
        if provider == "linkedin"
        else (
            "client_secret_basic",
            "client_secret_post",
        ),
        advertise_auth_methods=provider != "linkedin",
    )
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.attach(str(server.make_url("/")))
    return fake


def oauth_settings(provider: str, idp: FakeOpenIDProvider) -> dict[str, str]:
    return {
        f"oauth_{provider}_client_id": idp.client_id,
        f"oauth_{provider}_client_secret": idp.client_secret,
        f"oauth_{provider}_discovery_url": idp.discovery_url,
    }


@pytest.fixture
def settings(
    make_settings: SettingsFactory,
    migrated_database_url: str,
    provider: str,
    idp: FakeOpenIDProvider,
) -> Settings:
    return make_settings(
        database_url=migrated_database_url,
        trusted_proxies="127.0.0.1,::1",
        **oauth_settings(provider, idp),
    )


@dataclass
class Browser:
    """The user's browser: the test client's cookie jar, a new client address per request
    (so the per-address budget of the sensitive routes never gets in the way)."""

    client: Client
    settings: Settings
    provider: str
    requests: int = 0

    def address(self) -> dict[str, str]:
        self.requests += 1
        return from_address(self.requests)

    async def start(self, *, next_path: str = NEXT, provider: str | None = None) -> Response:
        return await self.client.get(
            f"/api/v1/auth/oauth/{provider or self.provider}/start",
            params={"next": next_path},
            allow_redirects=False,
            headers=self.address(),
        )

    async def at_provider(self, authorize_url: str) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(authorize_url, allow_redirects=False) as response,
        ):
            assert response.status == 302, await response.text()
            return response.headers["Location"]

    async def callback(self, location: str) -> Response:
        parts = urlsplit(location)
        assert location.startswith(self.settings.public_url + "/api/v1/auth/oauth/")
        return await self.client.get(
            f"{parts.path}?{parts.query}", allow_redirects=False, headers=self.address()
        )

    async def sign_in(self, *, before_callback: Callable[[], None] | None = None) -> Response:
        started = await self.start()
        assert started.status == 302, await started.text()
        back = await self.at_provider(started.headers["Location"])
        if before_callback is not None:
            before_callback()
        return await self.callback(back)

    async def me(self, response: Response) -> dict[str, Any]:
        """Use the session the callback set up: cookie refresh (with CSRF), then /me."""
        csrf = response.cookies["ie_csrf"].value
        refreshed = await self.client.post(
            "/api/v1/auth/refresh",
            headers={"Origin": self.settings.public_url, "X-CSRF-Token": csrf, **self.address()},
        )
        assert refreshed.status == 200, await refreshed.text()
        token = (await refreshed.json())["access_token"]
        me = await self.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status == 200
        body: dict[str, Any] = await me.json()
        return body


@pytest.fixture
def browser(client: Client, settings: Settings, provider: str) -> Browser:
    return Browser(client=client, settings=settings, provider=provider)


@dataclass
class Written:
    users: int
    links: int
    sessions: int
    events: list[SecurityEvent]

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


async def written(settings: Settings) -> Written:
    async with open_database(settings.database_url):
        return Written(
            users=await User.all().count(),
            links=await OAuthAccount.all().count(),
            sessions=await AuthSession.all().count(),
            events=await SecurityEvent.all().order_by("id"),
        )


def assert_sent_to_sign_in(
    response: Response, settings: Settings, code: str, *, at_callback: bool = True
) -> None:
    assert response.status == 302
    assert response.headers["Location"] == f"{settings.public_url}/sign-in?error={code}"
    if at_callback:
        assert response.cookies["ie_oauth"].value == ""  # cleared
    else:
        assert "ie_oauth" not in response.cookies  # never set
    assert "ie_refresh" not in response.cookies


# -- success -----------------------------------------------------------------------------------


async def test_sign_in_creates_a_verified_customer_with_a_session(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings, provider: str
) -> None:
    started = await browser.start()
    assert started.status == 302
    flow_cookie = started.cookies["ie_oauth"]
    assert flow_cookie["httponly"] is True
    assert flow_cookie["samesite"] == "Lax"
    assert flow_cookie["path"] == "/api/v1/auth/oauth/"
    assert flow_cookie["secure"] == ""  # PUBLIC_URL is http here
    assert int(flow_cookie["max-age"]) == 600

    authorize = urlsplit(started.headers["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == idp.base_url
    asked = {key: values[0] for key, values in parse_qs(authorize.query).items()}
    assert asked["response_type"] == "code"
    assert asked["scope"] == "openid email profile"
    assert asked["client_id"] == idp.client_id
    assert asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == (f"{settings.public_url}/api/v1/auth/oauth/{provider}/callback")
    assert len(asked["state"]) >= 43
    assert len(asked["nonce"]) >= 43
    back = await browser.at_provider(started.headers["Location"])
    done = await browser.callback(back)
    assert done.status == 302, await done.text()
    assert done.headers["Location"] == settings.public_url + NEXT
    assert done.cookies["ie_oauth"].value == ""
    assert done.cookies["ie_refresh"]["httponly"] is True

    [token_request] = idp.token_requests
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["redirect_uri"] == asked["redirect_uri"]
    assert len(token_request["code_verifier"]) >= 43
    expected_post = provider == "linkedin"
    assert ("client_secret" in token_request) is expected_post

    me = await browser.me(done)
    assert me["email"] == EMAIL
    assert me["email_verified"] is True
    assert me["role"] == "customer"
    assert me["display_name"] == "Grace Hopper"

    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (1, 1, 1)
    assert state.kinds == ["registered", "login_succeeded"]
    assert state.events[0].data == {"provider": provider, "method": "oauth"}
    async with open_database(settings.database_url):
        user = await User.get(email=EMAIL)
        assert user.password_hash is None
        assert user.last_login_at is not None
        link = await OAuthAccount.get(user_id=user.id)
        assert (link.provider, link.subject, link.email) == (provider, "subject-1", EMAIL)


async def test_second_sign_in_reuses_the_account(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    first = await browser.me(await browser.sign_in())
    second = await browser.me(await browser.sign_in())
    assert first["id"] == second["id"]
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (1, 1, 2)
    assert state.kinds == ["registered", "login_succeeded", "login_succeeded"]
    assert len(idp.token_requests) == 2


async def test_a_verified_local_account_with_the_address_is_linked(
    browser: Browser, settings: Settings, provider: str
) -> None:
    async with open_database(settings.database_url):
        local = await User.create(
            email=EMAIL, password_hash="kept", display_name="Local", email_verified_at=utcnow()
        )
    done = await browser.sign_in()
    assert done.headers["Location"] == settings.public_url + NEXT
    assert (await browser.me(done))["id"] == str(local.id)
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (1, 1, 1)
    assert state.kinds == ["oauth_linked", "login_succeeded"]
    assert state.events[0].data == {
        "provider": provider,
        "method": "oauth",
        "password_cleared": False,
    }
    async with open_database(settings.database_url):
        user = await User.get(id=local.id)
        assert user.password_hash == "kept"
        assert user.display_name == "Local"
        assert (await OAuthAccount.get(provider=provider)).user_id == local.id  # type: ignore[attr-defined]


async def test_an_unverified_local_account_loses_its_password_when_linked(
    browser: Browser, settings: Settings
) -> None:
    """Pre-hijacking: someone registered the address first, never proved it, kept the
    password. The provider proves who owns the address; the squatter's way in must go."""
    async with open_database(settings.database_url):
        squatted = await User.create(email=EMAIL, password_hash="squatter's")
        await AuthSession.create(user=squatted, expires_at=utcnow().replace(year=2100))
    done = await browser.sign_in()
    assert (await browser.me(done))["email_verified"] is True
    async with open_database(settings.database_url):
        user = await User.get(id=squatted.id)
        assert user.password_hash is None
        sessions = await AuthSession.filter(user_id=user.id).order_by("created_at")
        assert [s.revoke_reason for s in sessions] == ["oauth_link", ""]
        linked = await SecurityEvent.get(kind="oauth_linked")
        assert linked.data["password_cleared"] is True


async def test_the_address_may_come_from_userinfo(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    idp.identity = Identity("subject-1", EMAIL, email_in_id_token=False)
    done = await browser.sign_in()
    assert (await browser.me(done))["email"] == EMAIL
    assert idp.userinfo_requests == 1


@pytest.mark.parametrize("provider", ["microsoft"])
async def test_microsoft_domain_verified_claim_counts_as_verified(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    idp.identity = Identity("subject-1", EMAIL, verified_claim="xms_edov")
    done = await browser.sign_in()
    assert done.headers["Location"] == settings.public_url + NEXT


async def test_providers_lists_the_enabled_ones(browser: Browser, provider: str) -> None:
    response = await browser.client.get("/api/v1/auth/oauth/providers")
    assert response.status == 200
    body = await response.json()
    assert [item["name"] for item in body["items"]] == [provider]
    assert body["items"][0]["start_url"] == f"/api/v1/auth/oauth/{provider}/start"


# -- denied paths: nothing written, the failure logged ------------------------------------------


def _now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Denial:
    arrange: Callable[[FakeOpenIDProvider], None]
    code: str
    reason: str
    redeems_code: bool = True  # whether the token endpoint was asked at all


def _set(**changes: Any) -> Callable[[FakeOpenIDProvider], None]:
    def arrange(idp: FakeOpenIDProvider) -> None:
        for name, value in changes.items():
            setattr(idp, name, value)

    return arrange


def _claims(**claims: Any) -> Callable[[FakeOpenIDProvider], None]:
    def arrange(idp: FakeOpenIDProvider) -> None:
        idp.id_token_claims = {
            key: value() if callable(value) else value for key, value in claims.items()
        }

    return arrange


DENIALS = {
    "state_mismatch": Denial(
        _set(return_state="forged-state"), "oauth_state_mismatch", "state_mismatch", False
    ),
    "bad_signature": Denial(_set(signing_key=rsa_key(1)), "oauth_token_invalid", "bad_signature"),
    "expired": Denial(
        _claims(exp=lambda: _now() - 600, iat=lambda: _now() - 4200),
        "oauth_token_invalid",
        "expired",
    ),
    "wrong_nonce": Denial(_claims(nonce="not-the-nonce"), "oauth_token_invalid", "nonce_mismatch"),
    "wrong_audience": Denial(_claims(aud="another-client"), "oauth_token_invalid", "claim_aud"),
    "wrong_issuer": Denial(
        _claims(iss="https://issuer.invalid"), "oauth_token_invalid", "issuer_mismatch"
    ),
    "issued_in_the_future": Denial(
        _claims(iat=lambda: _now() + 3600), "oauth_token_invalid", "claim_iat"
    ),
    "unverified_email": Denial(
        _set(identity=Identity("subject-1", EMAIL, email_verified=False)),
        "oauth_email_unverified",
        "email_unverified",
    ),
    "no_email": Denial(
        _set(identity=Identity("subject-1", None, email_verified=None)),
        "oauth_email_unverified",
        "no_email",
    ),
    "client_refused": Denial(
        _set(client_secret="rotated-at-the-provider"),
        "oauth_provider_error",
        "token_refused:invalid_client",
    ),
    "consent_declined": Denial(
        _set(deny=True), "oauth_provider_error", "provider_said:access_denied", False
    ),
}


@pytest.mark.parametrize("case", DENIALS)
async def test_denied_sign_in_writes_nothing(
    case: str, browser: Browser, idp: FakeOpenIDProvider, settings: Settings, provider: str
) -> None:
    denial = DENIALS[case]
    denial.arrange(idp)
    response = await browser.sign_in()
    assert_sent_to_sign_in(response, settings, denial.code)
    assert bool(idp.token_requests) is denial.redeems_code
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (0, 0, 0)
    [event] = state.events
    assert event.kind == "oauth_failed"
    assert event.data == {
        "provider": provider,
        "stage": "callback",
        "code": denial.code,
        "reason": denial.reason,
    }


@pytest.mark.parametrize("provider", ["microsoft"])
async def test_microsoft_token_of_another_tenant_than_its_issuer_is_refused(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    idp.id_token_claims = {"tid": "11111111-2222-3333-4444-555555555555"}
    response = await browser.sign_in()
    assert_sent_to_sign_in(response, settings, "oauth_token_invalid")
    [event] = (await written(settings)).events
    assert event.data["reason"] == "issuer_mismatch"


@pytest.mark.parametrize("tamper", ["missing", "tampered", "garbage"])
async def test_callback_without_its_own_flow_cookie_is_refused(
    tamper: str, browser: Browser, settings: Settings, provider: str
) -> None:
    jar = browser.client.session.cookie_jar

    def spoil() -> None:
        cookies = {cookie.key: cookie.value for cookie in jar}
        flow = cookies["ie_oauth"]
        jar.clear()
        if tamper == "tampered":
            jar.update_cookies({"ie_oauth": flow[:-4] + "AAAA"})
        elif tamper == "garbage":
            jar.update_cookies({"ie_oauth": "not.a.jwt"})

    response = await browser.sign_in(before_callback=spoil)
    assert_sent_to_sign_in(response, settings, "oauth_state_mismatch")
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (0, 0, 0)
    assert state.kinds == ["oauth_failed"]


async def test_a_flow_cookie_is_good_for_its_own_provider_only(
    aiohttp_server: Any,
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    idp: FakeOpenIDProvider,
    provider: str,
) -> None:
    """Two providers on; the flow started with one cannot finish at the other's callback."""
    other_name = next(name for name in OAUTH_PROVIDERS if name != provider)
    other = FakeOpenIDProvider(client_id="other-id", client_secret="other-secret", key=rsa_key(0))
    other.attach(str((await aiohttp_server(other.app(), host="127.0.0.1")).make_url("/")))
    settings = make_settings(
        database_url=migrated_database_url,
        trusted_proxies="127.0.0.1,::1",
        **oauth_settings(provider, idp),
        **oauth_settings(other_name, other),
    )
    browser = Browser(await aiohttp_client(create_app(settings)), settings, provider)
    started = await browser.start()
    back = await browser.at_provider(started.headers["Location"])
    crossed = back.replace(f"/oauth/{provider}/callback", f"/oauth/{other_name}/callback")
    response = await browser.callback(crossed)
    assert_sent_to_sign_in(response, settings, "oauth_state_mismatch")
    [event] = (await written(settings)).events
    assert event.data["reason"] == "flow_of_another_provider"
    assert other.token_requests == idp.token_requests == []


async def test_suspended_account_is_refused(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    async with open_database(settings.database_url):
        user = await User.create(email=EMAIL, is_active=False, email_verified_at=utcnow())
        await OAuthAccount.create(user=user, provider=browser.provider, subject="subject-1")
    response = await browser.sign_in()
    assert_sent_to_sign_in(response, settings, "oauth_account_suspended")
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (1, 1, 0)
    [event] = state.events
    assert (event.kind, event.user_id) == ("oauth_failed", user.id)  # type: ignore[attr-defined]


async def test_unknown_provider_is_not_found(browser: Browser, settings: Settings) -> None:
    start = await browser.start(provider="myspace")
    assert start.status == 404
    assert (await start.json())["error"]["code"] == "oauth_provider_unknown"
    assert "ie_oauth" not in start.cookies
    callback = await browser.client.get(
        "/api/v1/auth/oauth/myspace/callback?code=x&state=y",
        allow_redirects=False,
        headers=browser.address(),
    )
    assert callback.status == 404
    assert (await callback.json())["error"]["code"] == "oauth_provider_unknown"
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (0, 0, 0)
    assert state.kinds == ["oauth_failed", "oauth_failed"]
    assert [e.data["stage"] for e in state.events] == ["start", "callback"]


async def test_disabled_provider_is_not_offered(
    browser: Browser, idp: FakeOpenIDProvider, settings: Settings, provider: str
) -> None:
    disabled = next(name for name in OAUTH_PROVIDERS if name != provider)
    response = await browser.start(provider=disabled)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "oauth_provider_unknown"
    assert idp.authorize_requests == []
    [event] = (await written(settings)).events
    assert event.data == {
        "provider": disabled,
        "stage": "start",
        "code": "oauth_provider_unknown",
        "reason": "provider_unknown",
    }


@pytest.mark.parametrize(
    "next_path",
    [
        "//evil.example/portal",
        "https://evil.example/portal",
        "/\\evil.example",
        "javascript:alert(1)",
        "portal",
        "/ok\t/evil",
        "/" + "a" * 2001,
    ],
)
async def test_next_must_be_a_path_on_this_site(
    next_path: str, browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    response = await browser.start(next_path=next_path)
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid_next"
    assert "ie_oauth" not in response.cookies
    assert idp.authorize_requests == []
    state = await written(settings)
    assert (state.users, state.links, state.sessions) == (0, 0, 0)
    assert state.kinds == ["oauth_failed"]


async def test_unreachable_provider_sends_the_browser_back(
    aiohttp_client: Any, make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    settings = make_settings(
        database_url=migrated_database_url,
        oauth_google_client_id="id",
        oauth_google_client_secret="secret",
        oauth_google_discovery_url="http://127.0.0.1:9/.well-known/openid-configuration",
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/api/v1/auth/oauth/google/start", allow_redirects=False)
    assert response.status == 302
    assert (
        response.headers["Location"] == f"{settings.public_url}/sign-in?error=oauth_provider_error"
    )
    [event] = (await written(settings)).events
    assert event.data["reason"] == "unreachable"


async def test_flow_cookie_is_secure_behind_https(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    idp: FakeOpenIDProvider,
    provider: str,
) -> None:
    settings = make_settings(
        database_url=migrated_database_url,
        public_url="https://hub.example",
        **oauth_settings(provider, idp),
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get(f"/api/v1/auth/oauth/{provider}/start", allow_redirects=False)
    assert response.status == 302
    assert response.cookies["ie_oauth"]["secure"] is True
    redirect_uri = parse_qs(urlsplit(response.headers["Location"]).query)["redirect_uri"]
    assert redirect_uri == [f"https://hub.example/api/v1/auth/oauth/{provider}/callback"]


# -- the provider's documents: https only, cached per process -----------------------------------


async def test_discovery_and_keys_are_fetched_once_per_process(
    browser: Browser, idp: FakeOpenIDProvider
) -> None:
    await browser.sign_in()
    await browser.sign_in()
    assert (idp.discovery_requests, idp.jwks_requests) == (1, 1)


@pytest.mark.parametrize("endpoint", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
async def test_plain_http_endpoint_off_loopback_is_refused(
    endpoint: str, browser: Browser, idp: FakeOpenIDProvider, settings: Settings
) -> None:
    idp.endpoint_overrides = {endpoint: "http://idp.example/endpoint"}
    response = await browser.start()
    assert_sent_to_sign_in(response, settings, "oauth_provider_error", at_callback=False)
    assert idp.authorize_requests == []
    [event] = (await written(settings)).events
    assert (event.data["stage"], event.data["reason"]) == ("start", "insecure_endpoint")


async def test_rotated_keys_are_refetched_but_not_for_every_forged_key_id(
    idp: FakeOpenIDProvider, provider: str
) -> None:
    now = [1000.0]
    config = ProviderConfig(
        name=provider,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        discovery_url=idp.discovery_url,
    )
    oidc = OpenIDProvider(config, redirect_uri="http://127.0.0.1:8080/cb", clock=lambda: now[0])
    try:
        claims = await oidc.verify_id_token(
            idp.issue_id_token(idp.identity, nonce="n1"), nonce="n1"
        )
        assert claims["sub"] == "subject-1"
        assert idp.jwks_requests == 1

        idp.rotate_key(rsa_key(1), "key-2")
        # Within a minute of the last fetch an unknown key id is not worth a refetch...
        with pytest.raises(OAuthTokenInvalid) as refused:
            await oidc.verify_id_token(idp.issue_id_token(idp.identity, nonce="n2"), nonce="n2")
        assert refused.value.reason == "unknown_key"
        assert idp.jwks_requests == 1
        # ...after it, the provider may well have rotated: one refetch finds the new key.
        now[0] += KEYS_REFETCH_INTERVAL
        await oidc.verify_id_token(idp.issue_id_token(idp.identity, nonce="n3"), nonce="n3")
        assert idp.jwks_requests == 2

        now[0] += CACHE_TTL  # and both documents expire
        await oidc.keys()
        assert (idp.discovery_requests, idp.jwks_requests) == (2, 3)
    finally:
        await oidc.aclose()
