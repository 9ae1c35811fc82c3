"""A Stripe-shaped API for tests, on 127.0.0.1: PaymentIntents, refunds, customers and
subscriptions, answered as Stripe answers (JSON objects with ids, `object`, errors under
`error`). It is strict where Stripe is: every request needs `Authorization: Bearer sk_test_...`
with the configured key; POSTs are form-encoded (`metadata[order_id]=...`) and need an
`Idempotency-Key`: a key seen before replays its first answer, and a key reused with other
parameters is refused (400 `idempotency_error`). Tests read `requests` and set `fail_next`.

`sign(payload, secret)` makes a `Stripe-Signature` header the way Stripe signs webhooks:
`t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

SECRET_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_test_0123456789"
PARAMS = web.RequestKey("params", dict[str, Any])


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0]=c` -> {"a": {"b": {"0": "c"}}} (lists stay dicts keyed by index)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


def sign(
    payload: bytes | str, secret: str = WEBHOOK_SECRET, *, timestamp: int | None = None
) -> str:
    text = payload.decode() if isinstance(payload, bytes) else payload
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(
    event_type: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None
) -> bytes:
    """A webhook body as Stripe sends it."""
    return json.dumps(
        {
            "id": event_id or f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(time.time()) if created is None else created,
            "type": event_type,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": obj},
        }
    ).encode()


def _error(status: int, message: str, *, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)


@dataclass
class FakeStripe:
    secret_key: str = SECRET_KEY
    requests: list[Seen] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: int | None = None  # answer the next request with this status
    _answers: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/payment_intents", self._create_intent)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self._cancel_intent)
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_post("/v1/customers", self._create_customer)
        app.router.add_post("/v1/subscriptions", self._create_subscription)
        app.router.add_post("/v1/subscriptions/{id}", self._update_subscription)
        app.router.add_get("/v1/subscriptions/{id}", self._get_subscription)
        return app

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def intent_succeeded(self, intent_id: str) -> dict[str, Any]:
        """The PaymentIntent as payment_intent.succeeded carries it."""
        intent = self.intents[intent_id]
        return {**intent, "status": "succeeded", "amount_received": intent["amount"]}

    def charge(self, intent_id: str) -> dict[str, Any]:
        intent = self.intents[intent_id]
        refunded = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent_id
        )
        return {
            "id": f"ch_{intent_id[3:]}",
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": refunded,
            "currency": intent["currency"],
            "payment_intent": intent_id,
            "refunded": refunded == intent["amount"],
        }

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _error(401, "Invalid API Key provided", kind="invalid_request_error")
        if request.content_type != "application/x-www-form-urlencoded" and request.can_read_body:
            return _error(400, "Stripe takes form-encoded bodies")
        body = (await request.read()).decode()
        params = _nest(parse_qsl(body, keep_blank_values=True))
        key = request.headers.get("Idempotency-Key")
        self.requests.append(Seen(request.method, request.path, params, key))
        if request.method == "POST":
            if not key:
                return _error(400, "An Idempotency-Key is required here")
            if key in self._answers:
                old_body, status, answer = self._answers[key]
                if old_body != body:
                    return _error(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters",
                        kind="idempotency_error",
                    )
                return web.json_response(
                    answer, status=status, headers={"Idempotent-Replayed": "true"}
                )
        if self.fail_next is not None:
            status, self.fail_next = self.fail_next, None
            return _error(status, "Something went wrong", kind="api_error")
        request[PARAMS] = params
        response: web.StreamResponse = await handler(request)
        if request.method == "POST" and key and isinstance(response, web.Response):
            assert response.text is not None
            self._answers[key] = (body, response.status, json.loads(response.text))
        return response

    async def _create_intent(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        if not str(p.get("amount", "")).isdigit() or int(p["amount"]) < 50:
            return _error(400, "Invalid amount")
        if not re.fullmatch(r"[a-z]{3}", p.get("currency", "")):
            return _error(400, "Invalid currency")
        ident = f"pi_{secrets.token_hex(12)}"
        intent = {
            "id": ident,
            "object": "payment_intent",
            "amount": int(p["amount"]),
            "currency": p["currency"],
            "status": "requires_payment_method",
            "client_secret": f"{ident}_secret_{secrets.token_hex(8)}",
            "metadata": p.get("metadata", {}),
            "latest_charge": f"ch_{ident[3:]}",
            "livemode": False,
        }
        self.intents[ident] = intent
        return web.json_response(intent)

    async def _cancel_intent(self, request: web.Request) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _error(404, "No such payment_intent")
        if intent["status"] in ("succeeded", "canceled"):
            return _error(400, f"This PaymentIntent's status is {intent['status']}")
        intent["status"] = "canceled"
        intent["cancellation_reason"] = request[PARAMS].get("cancellation_reason")
        return web.json_response(intent)

    async def _create_refund(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        intent = self.intents.get(p.get("payment_intent", ""))
        if intent is None:
            return _error(404, "No such payment_intent")
        amount = int(p.get("amount", intent["amount"]))
        refunded = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
        )
        if amount <= 0 or refunded + amount > intent["amount"]:
            return _error(400, "Refund amount is greater than unrefunded amount on charge")
        ident = f"re_{secrets.token_hex(12)}"
        refund = {
            "id": ident,
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": "succeeded",
            "metadata": p.get("metadata", {}),
        }
        self.refunds[ident] = refund
        return web.json_response(refund)

    async def _create_customer(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        return web.json_response(
            {"id": f"cus_{secrets.token_hex(8)}", "object": "customer", "email": p.get("email")}
        )

    async def _create_subscription(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        price = ((p.get("items") or {}).get("0") or {}).get("price")
        if not p.get("customer") or not price:
            return _error(400, "Missing customer or items[0][price]")
        ident = f"sub_{secrets.token_hex(12)}"
        end = int(time.time()) + 30 * 86400
        sub = {
            "id": ident,
            "object": "subscription",
            "customer": p["customer"],
            "status": "incomplete",
            "cancel_at_period_end": False,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": f"si_{ident[4:]}",
                        "object": "subscription_item",
                        "price": {"id": price},
                        "current_period_end": end,
                    }
                ],
            },
            "latest_invoice": {
                "id": f"in_{ident[4:]}",
                "object": "invoice",
                "confirmation_secret": {
                    "client_secret": f"pi_{ident[4:]}_secret_x",
                    "type": "payment_intent",
                },
            },
            "metadata": p.get("metadata", {}),
        }
        self.subscriptions[ident] = sub
        return web.json_response(sub)

    async def _get_subscription(self, request: web.Request) -> web.Response:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            return _error(404, "No such subscription")
        return web.json_response({**sub, "latest_invoice": sub["latest_invoice"]["id"]})

    async def _update_subscription(self, request: web.Request) -> web.Response:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            return _error(404, "No such subscription")
        items = request[PARAMS].get("items")
        if items is not None:
            item = items["0"]
            current = sub["items"]["data"][0]
            if item.get("id") != current["id"]:
                return _error(400, "items[0][id] must name the subscription's item")
            current["price"] = {"id": item["price"]}
        if "cancel_at_period_end" in request[PARAMS]:
            sub["cancel_at_period_end"] = request[PARAMS]["cancel_at_period_end"] == "true"
        return web.json_response({**sub, "latest_invoice": sub["latest_invoice"]["id"]})
