"""Stripe through its official library: PaymentIntents, hosted Checkout Sessions, refunds,
customers and subscriptions, each call with an idempotency key, over the library's aiohttp
client (the app's session).

`STRIPE_API_BASE` points the library elsewhere (the tests' Stripe-shaped server on loopback).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import stripe

from core.errors import ServiceUnavailable
from core.logs import get_logger

log = get_logger(__name__)

PROVIDER = "stripe"
# Payments through a hosted Checkout Session: `provider_charge_id` holds the session id (cs_...)
# for good, `provider_payment_id` holds it too until Stripe names the PaymentIntent, then the
# PaymentIntent's id (refunds and charge.refunded go by it).
CHECKOUT_PROVIDER = "stripe_checkout"


class PaymentProviderError(ServiceUnavailable):
    default_code = "payment_provider_error"
    default_message = "The payment provider did not accept the request"


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    client_secret: str
    status: str


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str
    status: str  # open, complete, expired


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    id: str
    status: str  # succeeded, pending, failed, canceled


@dataclass(frozen=True, slots=True)
class ProviderSubscription:
    id: str
    customer_id: str
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    client_secret: str | None


class StripeGateway:
    def __init__(self, *, secret_key: str, api_base: str, session: aiohttp.ClientSession) -> None:
        http = stripe.AIOHTTPClient(session=session, timeout=aiohttp.ClientTimeout(total=30))
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=http,
            max_network_retries=2,
        )

    async def create_payment_intent(
        self, *, amount: int, currency: str, order_id: str, user_id: str, idempotency_key: str
    ) -> Intent:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                {
                    "amount": amount,
                    "currency": currency.lower(),
                    "automatic_payment_methods": {"enabled": True},
                    "metadata": {"order_id": order_id, "user_id": user_id},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return Intent(id=intent.id, client_secret=intent.client_secret or "", status=intent.status)

    async def cancel_payment_intent(self, *, intent_id: str, idempotency_key: str) -> str:
        try:
            intent = await self._client.v1.payment_intents.cancel_async(
                intent_id,
                {"cancellation_reason": "abandoned"},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return intent.status

    async def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        name: str,
        order_id: str,
        user_id: str,
        success_url: str,
        cancel_url: str,
        expires_at: int,
        idempotency_key: str,
    ) -> CheckoutSession:
        """A hosted page in `payment` mode for one line of `amount` (the server's total)."""
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "price_data": {
                                "currency": currency.lower(),
                                "unit_amount": amount,
                                "product_data": {"name": name},
                            },
                            "quantity": 1,
                        }
                    ],
                    "client_reference_id": order_id,
                    "metadata": {"order_id": order_id, "user_id": user_id},
                    "payment_intent_data": {"metadata": {"order_id": order_id, "user_id": user_id}},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "expires_at": expires_at,
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return CheckoutSession(id=session.id, url=session.url or "", status=session.status or "")

    async def expire_checkout_session(self, *, session_id: str, idempotency_key: str) -> str:
        try:
            session = await self._client.v1.checkout.sessions.expire_async(
                session_id, None, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return session.status or ""

    async def create_refund(
        self, *, payment_intent_id: str, amount: int, idempotency_key: str, refund_id: str
    ) -> ProviderRefund:
        try:
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "metadata": {"refund_id": refund_id},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return ProviderRefund(id=refund.id, status=refund.status or "pending")

    async def create_subscription(
        self, *, email: str, user_id: str, price_id: str, idempotency_key: str
    ) -> ProviderSubscription:
        try:
            customer = await self._client.v1.customers.create_async(
                {"email": email, "metadata": {"user_id": user_id}},
                {"idempotency_key": f"{idempotency_key}:customer"},
            )
            sub = await self._client.v1.subscriptions.create_async(
                {
                    "customer": customer.id,
                    "items": [{"price": price_id}],
                    "payment_behavior": "default_incomplete",
                    "expand": ["latest_invoice.confirmation_secret"],
                    "metadata": {"user_id": user_id},
                },
                {"idempotency_key": f"{idempotency_key}:subscription"},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return _subscription(sub.to_dict())

    async def change_price(
        self, *, subscription_id: str, price_id: str, idempotency_key: str
    ) -> ProviderSubscription:
        """Move the subscription's item to another price, prorated (upgrade or downgrade)."""
        try:
            current = await self._client.v1.subscriptions.retrieve_async(subscription_id)
            item_id = current["items"]["data"][0]["id"]
            sub = await self._client.v1.subscriptions.update_async(
                subscription_id,
                {
                    "items": [{"id": item_id, "price": price_id}],
                    "proration_behavior": "create_prorations",
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return _subscription(sub.to_dict())

    async def cancel_at_period_end(
        self, *, subscription_id: str, idempotency_key: str
    ) -> ProviderSubscription:
        try:
            sub = await self._client.v1.subscriptions.update_async(
                subscription_id,
                {"cancel_at_period_end": True},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._error(exc) from None
        return _subscription(sub.to_dict())

    @staticmethod
    def _error(exc: stripe.StripeError) -> PaymentProviderError:
        log.warning("stripe_error", error=type(exc).__name__, status=exc.http_status)
        return PaymentProviderError(
            "payment_provider_error",
            "The payment provider did not accept the request",
            details={"provider_status": exc.http_status, "provider_code": exc.code},
        )


def _subscription(data: dict[str, Any]) -> ProviderSubscription:
    end = data.get("current_period_end")
    if end is None:  # newer API versions keep the period on the items
        items = (data.get("items") or {}).get("data") or [{}]
        end = items[0].get("current_period_end")
    invoice = data.get("latest_invoice")
    secret = None
    if isinstance(invoice, dict):
        secret = (invoice.get("confirmation_secret") or {}).get("client_secret")
    customer = data.get("customer")
    return ProviderSubscription(
        id=str(data["id"]),
        customer_id=str(customer["id"] if isinstance(customer, dict) else customer or ""),
        status=str(data.get("status", "incomplete")),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        current_period_end=datetime.fromtimestamp(int(end), UTC) if end else None,
        client_secret=secret,
    )
