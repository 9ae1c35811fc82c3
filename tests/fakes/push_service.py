"""A push service for tests (RFC 8030/8291/8292), strict where a real one is.

Each request must carry `Authorization: vapid t=<JWT>, k=<key>` whose JWT is ES256-signed by
`k` (and `k` is the application server key the service was told to expect), with `aud` the
endpoint's origin and `exp` in the future and at most 24 hours away, plus a `sub`; the body
must be `Content-Encoding: aes128gcm`, with a `TTL`, a valid `Urgency` and a `Topic` of at most
32 URL-safe characters when present. The body is DECRYPTED with the subscription's private key
and auth secret, and the plaintext recorded in `received`. A request that breaks a rule is
answered 400/401/403 and recorded in `violations`.

`answer(status, times=n, retry_after=...)` makes the next n requests get that status (201,
404, 410, 429, 500, ...); after them it answers 201. Unknown endpoints get 404.

Serve it with aiohttp's test server on 127.0.0.1; `attach(base_url)` tells it its address.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

URGENCIES = {"very-low", "low", "normal", "high"}
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserSubscription:
    """What a browser makes in pushManager.subscribe(): a P-256 pair and a 16-byte secret."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def json(self) -> dict[str, Any]:
        """PushSubscription.toJSON()"""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }


@dataclass
class Received:
    token: str
    headers: CIMultiDict[str]  # names in any case
    claims: dict[str, Any]
    plaintext: bytes
    at: float  # time.monotonic() when it arrived


@dataclass
class FakePushService:
    expected_key: str | None = None  # the application server key (base64url) to insist on
    received: list[Received] = field(default_factory=list)
    requests: list[float] = field(default_factory=list)  # monotonic time of every request
    violations: list[str] = field(default_factory=list)
    subscriptions: dict[str, BrowserSubscription] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)  # token -> 404 or 410
    _answers: deque[tuple[int, str | None]] = field(default_factory=deque)
    base_url: str = ""
    _arrival: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int, *, timeout: float = 10) -> list[Received]:
        """Until `count` pushes have been received (woken by each arrival, no polling)."""

        async def arrived() -> None:
            while len(self.received) < count:
                self._arrival.clear()
                await self._arrival.wait()

        await asyncio.wait_for(arrived(), timeout)
        return self.received

    def attach(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        return app

    def subscribe(self) -> BrowserSubscription:
        token = secrets.token_urlsafe(16)
        subscription = BrowserSubscription(endpoint=f"{self.base_url}/push/{token}")
        self.subscriptions[token] = subscription
        return subscription

    def forget(self, subscription: BrowserSubscription, *, status: int = 410) -> None:
        """The browser unsubscribed: its endpoint answers `status` (404 or 410) from now on."""
        self.gone[subscription.endpoint.rsplit("/", 1)[1]] = status

    def answer(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        self._answers.extend([(status, retry_after)] * times)

    def plaintexts(self) -> list[bytes]:
        return [r.plaintext for r in self.received]

    def _refuse(self, status: int, problem: str) -> web.Response:
        self.violations.append(problem)
        return web.json_response({"error": problem}, status=status)

    async def _push(self, request: web.Request) -> web.Response:
        self.requests.append(time.monotonic())
        token = request.match_info["token"]
        subscription = self.subscriptions.get(token)
        if subscription is None:
            return web.Response(status=404)
        if token in self.gone:
            return web.Response(status=self.gone[token])
        claims = self._check_vapid(request)
        if isinstance(claims, web.Response):
            return claims
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(400, "content-encoding is not aes128gcm")
        ttl = request.headers.get("TTL", "")
        if not ttl.isdigit():
            return self._refuse(400, f"bad TTL {ttl!r}")
        urgency = request.headers.get("Urgency")
        if urgency is not None and urgency not in URGENCIES:
            return self._refuse(400, f"bad Urgency {urgency!r}")
        topic = request.headers.get("Topic")
        if topic is not None and not TOPIC.match(topic):
            return self._refuse(400, f"bad Topic {topic!r}")
        body = await request.read()
        if len(body) > 4096:
            return self._refuse(413, f"body of {len(body)} bytes")
        try:
            plaintext = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except Exception as exc:  # noqa: BLE001 - any failure to decrypt is the sender's fault
            return self._refuse(400, f"cannot decrypt: {exc!r}")
        if self._answers:
            status, retry_after = self._answers.popleft()
            if status >= 300:
                headers = {"Retry-After": retry_after} if retry_after else {}
                return web.Response(status=status, headers=headers)
        self.received.append(
            Received(
                token=token,
                headers=CIMultiDict(request.headers),
                claims=claims,
                plaintext=plaintext,
                at=time.monotonic(),
            )
        )
        self._arrival.set()
        return web.Response(status=201, headers={"Location": f"{self.base_url}/msg/{token}"})

    def _check_vapid(self, request: web.Request) -> dict[str, Any] | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "vapid":
            return self._refuse(401, "no vapid authorization")
        params = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part.strip())
        token, key = params.get("t"), params.get("k")
        if not token or not key:
            return self._refuse(401, "vapid authorization without t or k")
        if self.expected_key is not None and key != self.expected_key:
            return self._refuse(403, "k is not the expected application server key")
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(key)
            )
            origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
            claims: dict[str, Any] = jwt.decode(
                token,
                public,
                algorithms=["ES256"],
                audience=origin,
                options={"require": ["exp", "aud", "sub"]},
            )
        except (ValueError, jwt.PyJWTError) as exc:
            return self._refuse(403, f"bad vapid token: {exc}")
        if claims["exp"] > time.time() + 24 * 3600:
            return self._refuse(403, "exp more than 24 hours away")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return self._refuse(403, "sub is not mailto: or https:")
        return claims
