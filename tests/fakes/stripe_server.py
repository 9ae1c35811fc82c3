"""A Stripe-shaped API for tests, on 127.0.0.1: PaymentIntents, Checkout Sessions, refunds,
customers and subscriptions, answered as Stripe answers (JSON objects with ids, `object`,
errors under `error`). It is strict where Stripe is: every request needs
`Authorization: Bearer sk_test_...` with the configured key; POSTs are form-encoded
(`metadata[order_id]=...`) and need an `Idempotency-Key`: a key seen before replays its first
answer, and a key reused with other parameters is refused (400 `idempotency_error`). Tests
read `requests` and set `fail_next`. Checkout Sessions are checked as Stripe checks them
(mode, line items priced with `price_data`, `expires_at` 30 min to 24 h ahead) and, when
`return_origin` is set, their success/cancel URLs must be on that origin; `complete_session`
plays the buyer paying.

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
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    return_origin: str | None = None  # Checkout Sessions must send buyers back here
    fail_next: int | None = None  # answer the next request with this status
    _answers: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/payment_intents", self._create_intent)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self._cancel_intent)
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self._expire_session)
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

    def complete_session(self, session_id: str, *, paid: bool = True) -> dict[str, Any]:
        """The buyer paid on the hosted page (or, `paid=False`, started a delayed payment):
        Stripe makes the PaymentIntent, with `payment_intent_data`'s metadata; returns the
        session as checkout.session.completed carries it."""
        session = self.sessions[session_id]
        ident = f"pi_{secrets.token_hex(12)}"
        self.intents[ident] = {
            "id": ident,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": session["currency"],
            "status": "succeeded" if paid else "processing",
            "client_secret": f"{ident}_secret_{secrets.token_hex(8)}",
            "metadata": session["_intent_metadata"],
            "latest_charge": f"ch_{ident[3:]}",
            "livemode": False,
        }
        session.update(
            status="complete", payment_status="paid" if paid else "unpaid", payment_intent=ident
        )
        return self.session_object(session_id)

    def session_object(self, session_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.sessions[session_id].items() if not k.startswith("_")}

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

    async def _create_session(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        if p.get("mode") != "payment":
            return _error(400, "This fake takes mode=payment only")
        lines = p.get("line_items")
        if not isinstance(lines, dict) or not lines:
            return _error(400, "line_items is required in payment mode")
        total, currencies = 0, set()
        for index in sorted(lines, key=int):
            line = lines[index]
            data = line.get("price_data") or {}
            amount, quantity = str(data.get("unit_amount", "")), str(line.get("quantity", ""))
            if "price" in line or not amount.isdigit() or not quantity.isdigit():
                return _error(400, f"line_items[{index}] needs price_data[unit_amount], quantity")
            if not (data.get("product_data") or {}).get("name"):
                return _error(400, f"line_items[{index}][price_data][product_data][name]")
            if int(quantity) < 1:
                return _error(400, "quantity must be at least 1")
            currencies.add(data.get("currency", ""))
            total += int(amount) * int(quantity)
        currency = currencies.pop() if len(currencies) == 1 else ""
        if not re.fullmatch(r"[a-z]{3}", currency):
            return _error(400, "All line items need the same valid currency")
        if total < 50:
            return _error(400, "The Checkout Session's total amount due must add up to at least")
        for name in ("success_url", "cancel_url"):
            url = p.get(name, "")
            if not re.match(r"https?://", url):
                return _error(400, f"Not a valid URL: {name}")
            if self.return_origin is not None and not url.startswith(self.return_origin + "/"):
                return _error(400, f"{name} is not on {self.return_origin}")
        now = int(time.time())
        expires = str(p.get("expires_at", now + 86400))
        if not expires.isdigit() or not now + 1800 <= int(expires) <= now + 86400:
            return _error(400, "expires_at must be 30 minutes to 24 hours after creation")
        ident = f"cs_test_{secrets.token_hex(24)}"
        session = {
            "id": ident,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": total,
            "amount_subtotal": total,
            "currency": currency,
            "client_reference_id": p.get("client_reference_id"),
            "metadata": p.get("metadata", {}),
            "payment_intent": None,
            "success_url": p["success_url"],
            "cancel_url": p["cancel_url"],
            "expires_at": int(expires),
            "url": f"https://checkout.stripe.com/c/pay/{ident}",
            "livemode": False,
            "_intent_metadata": (p.get("payment_intent_data") or {}).get("metadata", {}),
        }
        self.sessions[ident] = session
        return web.json_response(self.session_object(ident))

    async def _expire_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "No such checkout.session")
        if session["status"] != "open":
            return _error(400, "Only Checkout Sessions with a status in [open] can be expired")
        session["status"] = "expired"
        return web.json_response(self.session_object(session["id"]))

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
