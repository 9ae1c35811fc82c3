"""A PayPal-shaped REST API for tests, on 127.0.0.1: OAuth client credentials, Orders v2
(create, capture), capture refunds, and the webhook verification API.

Strict as PayPal is: the token endpoint takes HTTP Basic with the app's id and secret and
`grant_type=client_credentials`; every other call needs that Bearer token; POSTs that change
things need `PayPal-Request-Id` (a repeated id replays the first answer); amounts are decimal
strings. The verification API answers SUCCESS only for an event signed with `sign_event`
(a stand-in for PayPal's certificate signature: HMAC over transmission id, time, webhook id
and the CRC32 of the event) for the webhook id it knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

CLIENT_ID = "paypal-client-id"
CLIENT_SECRET = "paypal-client-secret"
WEBHOOK_ID = "WH-TEST-0001"
_SIGNING_KEY = b"fake-paypal-signing-key"


@dataclass(frozen=True)
class Seen:
    path: str
    body: dict[str, Any]
    request_id: str | None


def _crc(event: dict[str, Any]) -> int:
    return zlib.crc32(json.dumps(event, sort_keys=True, separators=(",", ":")).encode())


def sign_event(event: dict[str, Any], *, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
    """The headers PayPal sends with a webhook (signature per the fake's scheme)."""
    tid = secrets.token_hex(8)
    when = datetime.now(UTC).isoformat()
    message = f"{tid}|{when}|{webhook_id}|{_crc(event)}".encode()
    sig = base64.b64encode(hmac.new(_SIGNING_KEY, message, hashlib.sha256).digest()).decode()
    return {
        "PAYPAL-TRANSMISSION-ID": tid,
        "PAYPAL-TRANSMISSION-TIME": when,
        "PAYPAL-TRANSMISSION-SIG": sig,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "PAYPAL-CERT-URL": "https://api.paypal.com/v1/notifications/certs/CERT-fake",
    }


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"name": name, "message": message}, status=status)


@dataclass
class FakePayPal:
    requests: list[Seen] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens_issued: int = 0
    _tokens: set[str] = field(default_factory=set)
    _answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/oauth2/token", self._token)
        app.router.add_post("/v2/checkout/orders", self._create_order)
        app.router.add_post("/v2/checkout/orders/{id}/capture", self._capture)
        app.router.add_post("/v2/payments/captures/{id}/refund", self._refund)
        app.router.add_post("/v1/notifications/verify-webhook-signature", self._verify)
        return app

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def capture_event(
        self, paypal_order_id: str, *, event_type: str = "PAYMENT.CAPTURE.COMPLETED"
    ) -> dict[str, Any]:
        order = self.orders[paypal_order_id]
        capture = order["purchase_units"][0]["payments"]["captures"][0]
        return {
            "id": f"WH-{secrets.token_hex(8)}",
            "event_type": event_type,
            "resource_type": "capture",
            "resource": {
                **capture,
                "supplementary_data": {"related_ids": {"order_id": paypal_order_id}},
            },
        }

    def refund_event(self, capture_id: str, total_refunded: str, currency: str) -> dict[str, Any]:
        return {
            "id": f"WH-{secrets.token_hex(8)}",
            "event_type": "PAYMENT.CAPTURE.REFUNDED",
            "resource_type": "refund",
            "resource": {
                "id": f"RF-{secrets.token_hex(6)}",
                "status": "COMPLETED",
                "seller_payable_breakdown": {
                    "total_refunded_amount": {"currency_code": currency, "value": total_refunded}
                },
                "links": [
                    {
                        "rel": "up",
                        "href": f"https://api.paypal.com/v2/payments/captures/{capture_id}",
                    }
                ],
            },
        }

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and token in self._tokens

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return _error(401, "invalid_client", "Client Authentication failed")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "Grant type is not supported")
        token = f"A21AA{secrets.token_hex(16)}"
        self._tokens.add(token)
        self.tokens_issued += 1
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 32400}
        )

    async def _guarded(
        self, request: web.Request, *, needs_request_id: bool = True
    ) -> tuple[dict[str, Any], str | None] | web.Response:
        if not self._authorized(request):
            return _error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        if request.content_type != "application/json":
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Send JSON")
        body = await request.json()
        request_id = request.headers.get("PayPal-Request-Id")
        self.requests.append(Seen(request.path, body, request_id))
        if needs_request_id and not request_id:
            return _error(400, "INVALID_REQUEST", "PayPal-Request-Id is required")
        return body, request_id

    def _remember(
        self, request_id: str | None, status: int, answer: dict[str, Any]
    ) -> web.Response:
        if request_id is not None:
            self._answers[request_id] = (status, answer)
        return web.json_response(answer, status=status)

    def _replayed(self, request_id: str | None) -> web.Response | None:
        if request_id is not None and request_id in self._answers:
            status, answer = self._answers[request_id]
            return web.json_response(answer, status=status)
        return None

    async def _create_order(self, request: web.Request) -> web.Response:
        got = await self._guarded(request)
        if isinstance(got, web.Response):
            return got
        body, request_id = got
        if (replay := self._replayed(request_id)) is not None:
            return replay
        unit = body["purchase_units"][0]
        if body.get("intent") != "CAPTURE" or "." not in unit["amount"]["value"]:
            return _error(422, "UNPROCESSABLE_ENTITY", "Bad intent or amount")
        ident = secrets.token_hex(8).upper()
        order = {
            "id": ident,
            "status": "CREATED",
            "intent": "CAPTURE",
            "purchase_units": [{**unit, "payments": {"captures": []}}],
            "links": [
                {"rel": "self", "href": f"https://api.paypal.com/v2/checkout/orders/{ident}"},
                {"rel": "approve", "href": f"https://www.paypal.com/checkoutnow?token={ident}"},
            ],
        }
        self.orders[ident] = order
        return self._remember(request_id, 201, order)

    async def _capture(self, request: web.Request) -> web.Response:
        got = await self._guarded(request)
        if isinstance(got, web.Response):
            return got
        _, request_id = got
        if (replay := self._replayed(request_id)) is not None:
            return replay
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "No such order")
        if order["status"] == "COMPLETED":
            return _error(422, "ORDER_ALREADY_CAPTURED", "Order already captured")
        unit = order["purchase_units"][0]
        unit["payments"]["captures"] = [
            {
                "id": secrets.token_hex(8).upper(),
                "status": "COMPLETED",
                "amount": unit["amount"],
                "custom_id": unit.get("custom_id"),
                "final_capture": True,
            }
        ]
        order["status"] = "COMPLETED"
        return self._remember(request_id, 201, order)

    async def _refund(self, request: web.Request) -> web.Response:
        got = await self._guarded(request)
        if isinstance(got, web.Response):
            return got
        body, request_id = got
        if (replay := self._replayed(request_id)) is not None:
            return replay
        refund = {
            "id": secrets.token_hex(8).upper(),
            "status": "COMPLETED",
            "amount": body["amount"],
            "capture_id": request.match_info["id"],
        }
        self.refunds[refund["id"]] = refund
        return self._remember(request_id, 201, refund)

    async def _verify(self, request: web.Request) -> web.Response:
        got = await self._guarded(request, needs_request_id=False)
        if isinstance(got, web.Response):
            return got
        body, _ = got
        message = (
            f"{body['transmission_id']}|{body['transmission_time']}|{body['webhook_id']}|"
            f"{_crc(body['webhook_event'])}"
        ).encode()
        expected = base64.b64encode(
            hmac.new(_SIGNING_KEY, message, hashlib.sha256).digest()
        ).decode()
        ok = body["webhook_id"] == WEBHOOK_ID and hmac.compare_digest(
            expected, body["transmission_sig"]
        )
        return web.json_response({"verification_status": "SUCCESS" if ok else "FAILURE"})
