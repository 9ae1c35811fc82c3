"""A small OpenID provider for tests: discovery, authorize, token, JWKS and userinfo.

It is strict where a real provider is: the token endpoint authenticates the client (basic or
post, as its discovery document says), redeems each code once, for the client and
redirect_uri it was issued to, and only with the PKCE verifier whose S256 challenge came with
the authorization request. ID tokens are RS256, signed with PyJWT (not the library the code
under test verifies with). Tests change what it answers through `identity`, `id_token_claims`,
`signing_key` and `return_state`, and read what it was asked in `authorize_requests` and
`token_requests`.

Serve it with aiohttp's test server on 127.0.0.1; `attach(base_url)` tells it its address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

TENANT_TEMPLATE = "{tenantid}"


@dataclass
class Identity:
    """The person who signs in at the provider, and which claims the ID token carries."""

    subject: str
    email: str | None
    email_verified: bool | str | None = True
    name: str = "Grace Hopper"
    email_in_id_token: bool = True  # False: only userinfo knows the address (as with some)
    verified_claim: str = "email_verified"
    tenant: str = "9188040d-6c67-4c5b-b112-36a304b66dad"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    identity: Identity
    used: bool = False


@dataclass
class FakeOpenIDProvider:
    client_id: str
    client_secret: str
    key: RSAPrivateKey
    key_id: str = "key-1"
    auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post")
    tenant_issuer: bool = False  # Microsoft's multi-tenant issuer template
    identity: Identity = field(default_factory=lambda: Identity("subject-1", "grace@example.com"))
    id_token_claims: dict[str, Any] = field(default_factory=dict)  # overrides, per test
    signing_key: RSAPrivateKey | None = None  # sign with another key than the published one
    return_state: str | None = None  # send back another state than the one received
    deny: bool = False  # the person declines: back with error=access_denied
    advertise_auth_methods: bool = True  # False: discovery is silent (as LinkedIn's is)
    endpoint_overrides: dict[str, str] = field(default_factory=dict)  # in discovery
    discovery_requests: int = 0
    jwks_requests: int = 0
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    userinfo_requests: int = 0
    base_url: str = ""
    _grants: dict[str, Grant] = field(default_factory=dict)
    _access_tokens: dict[str, Identity] = field(default_factory=dict)

    def attach(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    @property
    def issuer(self) -> str:
        if self.tenant_issuer:
            return f"{self.base_url}/{TENANT_TEMPLATE}/v2.0"
        return self.base_url

    def issuer_for(self, identity: Identity) -> str:
        return self.issuer.replace(TENANT_TEMPLATE, identity.tenant)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/userinfo", self._userinfo)
        return app

    # -- endpoints ---------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_requests += 1
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.base_url}/authorize",
                "token_endpoint": f"{self.base_url}/token",
                "jwks_uri": f"{self.base_url}/jwks",
                "userinfo_endpoint": f"{self.base_url}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "code_challenge_methods_supported": ["S256"],
                **(
                    {"token_endpoint_auth_methods_supported": list(self.auth_methods)}
                    if self.advertise_auth_methods
                    else {}
                ),
                **self.endpoint_overrides,
            }
        )

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorize_requests.append(query)
        problems = [
            query.get("response_type") != "code",
            query.get("client_id") != self.client_id,
            "openid" not in query.get("scope", "").split(),
            query.get("code_challenge_method") != "S256",
            len(query.get("code_challenge", "")) != 43,
            not query.get("redirect_uri"),
            not query.get("state"),
            not query.get("nonce"),
        ]
        if any(problems):
            return web.Response(status=400, text="invalid authorization request")
        if self.deny:
            answer = {"error": "access_denied", "state": query["state"]}
            raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode(answer)}")
        code = secrets.token_urlsafe(24)
        self._grants[code] = Grant(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            code_challenge=query["code_challenge"],
            nonce=query["nonce"],
            identity=self.identity,
        )
        state = self.return_state if self.return_state is not None else query["state"]
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': state})}"
        raise web.HTTPFound(location)

    def _client_of(self, request: web.Request, form: dict[str, str]) -> str | None:
        """The authenticated client id, or None."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic ") and "client_secret_basic" in self.auth_methods:
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        elif "client_secret" in form and "client_secret_post" in self.auth_methods:
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            return None
        if client_id == self.client_id and hmac.compare_digest(secret, self.client_secret):
            return client_id
        return None

    async def _token(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_requests.append(form)
        client_id = self._client_of(request, form)
        if client_id is None:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self._grants.get(form.get("code", ""))
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if (
            grant is None
            or grant.used
            or grant.client_id != client_id
            or grant.redirect_uri != form.get("redirect_uri")
            or not 43 <= len(verifier) <= 128
            or not hmac.compare_digest(challenge, grant.code_challenge)
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        grant.used = True
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant.identity
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "id_token": self.issue_id_token(grant.identity, nonce=grant.nonce),
            },
            headers={"Cache-Control": "no-store"},
        )

    def issue_id_token(self, identity: Identity, *, nonce: str) -> str:
        """An ID token as the token endpoint would send it (with this test's overrides)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer_for(identity),
            "sub": identity.subject,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 3600,
            "nonce": nonce,
            "name": identity.name,
        }
        if self.tenant_issuer:
            claims["tid"] = identity.tenant
        if identity.email_in_id_token:
            claims["email"] = identity.email
            if identity.email_verified is not None:
                claims[identity.verified_claim] = identity.email_verified
        claims.update(self.id_token_claims)
        claims = {key: value for key, value in claims.items() if value is not None}
        return jwt.encode(
            claims,
            self.signing_key or self.key,
            algorithm="RS256",
            headers={"kid": self.key_id},
        )

    def rotate_key(self, key: RSAPrivateKey, key_id: str) -> None:
        """Publish and sign with a new key from now on (the old one is withdrawn)."""
        self.key, self.key_id = key, key_id

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response(
            {"keys": [{**public, "kid": self.key_id, "alg": "RS256", "use": "sig"}]}
        )

    async def _userinfo(self, request: web.Request) -> web.Response:
        self.userinfo_requests += 1
        header = request.headers.get("Authorization", "")
        identity = self._access_tokens.get(header.removeprefix("Bearer "))
        if not header.startswith("Bearer ") or identity is None:
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        body: dict[str, Any] = {"sub": identity.subject, "name": identity.name}
        if identity.email is not None:
            body["email"] = identity.email
        if identity.email_verified is not None:
            body[identity.verified_claim] = identity.email_verified
        return web.json_response(body)
