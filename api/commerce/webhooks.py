"""Stripe webhooks: the signature is checked by the library, each event id is processed once
(its `WebhookEvent` row is written in the same transaction as its effects, under a unique
constraint), and every handler moves state only forward, so late, repeated or out-of-order
events are harmless. An order becomes `paid` here and nowhere else.

A hosted Checkout Session pays through `checkout.session.completed` (or, for delayed methods,
`checkout.session.async_payment_succeeded`); the `payment_intent.succeeded` Stripe sends for
the same money finds the order paid already (or, arriving first, pays it: the session's
Payment adopts the PaymentIntent's id, and the session's own event then finds it paid)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import stripe
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from api.commerce import discounts, inventory, ledger
from api.commerce.events import Outbox
from api.commerce.orders import transition
from api.commerce.payments_stripe import CHECKOUT_PROVIDER, PROVIDER
from api.commerce.refunds import reconcile_refunded
from core.bus import EventBus
from core.clock import utcnow
from core.errors import BadRequest, ServiceUnavailable
from core.logs import get_logger
from db.models.commerce import (
    Order,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
    Variant,
    WebhookEvent,
)

log = get_logger(__name__)

TOLERANCE_SECONDS = 300


class InvalidSignature(BadRequest):
    default_code = "invalid_signature"


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    event_id: str
    type: str
    outcome: str
    duplicate: bool


def verify_stripe_event(*, payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event if `Stripe-Signature` is valid and recent (the library's own check)."""
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, TOLERANCE_SECONDS)
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidSignature("invalid_signature", "The webhook signature is not valid") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise BadRequest("malformed_event", "The event has no id")
    return event


async def handle_stripe_webhook(
    *, payload: bytes, signature: str | None, secret: str | None, bus: EventBus
) -> WebhookOutcome:
    if secret is None:
        raise ServiceUnavailable("webhooks_unavailable", "The Stripe webhook is not configured")
    event = verify_stripe_event(payload=payload, signature=signature, secret=secret)
    event_id, event_type = event["id"], str(event.get("type", ""))
    obj = (event.get("data") or {}).get("object") or {}
    outbox = Outbox()
    try:
        async with in_transaction():
            row = await WebhookEvent.create(
                provider=PROVIDER, event_id=event_id, type=event_type, payload=event
            )
            outcome = await _dispatch(
                event_type, obj, outbox, created=_timestamp(event.get("created"))
            )
            row.outcome = outcome
            await row.save(update_fields=["outcome"])
    except IntegrityError:
        if not await WebhookEvent.exists(provider=PROVIDER, event_id=event_id):
            raise  # another constraint: a bug, not a replay
        return WebhookOutcome(
            event_id=event_id, type=event_type, outcome="duplicate", duplicate=True
        )
    await outbox.publish(bus)
    log.info("stripe_webhook", event_id=event_id, type=event_type, outcome=outcome)
    return WebhookOutcome(event_id=event_id, type=event_type, outcome=outcome, duplicate=False)


async def _dispatch(
    event_type: str, obj: dict[str, Any], outbox: Outbox, *, created: datetime | None
) -> str:
    if event_type == "payment_intent.succeeded":
        return await _payment_succeeded(obj, outbox)
    if event_type in ("payment_intent.payment_failed", "payment_intent.canceled"):
        return await _payment_failed(obj, canceled=event_type.endswith("canceled"))
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return await _session_paid(obj, outbox, reason=event_type)
    if event_type in ("checkout.session.async_payment_failed", "checkout.session.expired"):
        return await _session_failed(obj, expired=event_type.endswith("expired"))
    if event_type == "charge.refunded":
        payment = await _payment(obj.get("payment_intent"))
        if payment is None:
            return "unknown_payment"
        return await reconcile_refunded(
            payment=payment, amount_refunded=int(obj.get("amount_refunded", 0)), outbox=outbox
        )
    if event_type in ("customer.subscription.updated", "customer.subscription.deleted"):
        return await _subscription_changed(
            obj, deleted=event_type.endswith("deleted"), created=created
        )
    if event_type == "invoice.payment_failed":
        return await _invoice_failed(obj, outbox)
    return "ignored"


async def _payment(intent_id: object) -> Payment | None:
    if not isinstance(intent_id, str):
        return None
    return await Payment.filter(
        provider__in=(PROVIDER, CHECKOUT_PROVIDER), provider_payment_id=intent_id
    ).first()


async def _payment_succeeded(obj: dict[str, Any], outbox: Outbox) -> str:
    payment = await _payment(obj.get("id")) or await _adopt_payment(obj)
    if payment is None:
        return "unknown_payment"
    received = int(obj.get("amount_received", obj.get("amount", 0)))
    charge = obj.get("latest_charge")
    if payment.provider == CHECKOUT_PROVIDER:
        charge = None  # the session's Payment keeps the session id there
    return await settle_payment(
        payment=payment,
        received=received,
        currency=str(obj.get("currency", "")).upper(),
        charge_id=charge if isinstance(charge, str) else None,
        reason="payment_intent.succeeded",
        outbox=outbox,
    )


async def settle_payment(
    *,
    payment: Payment,
    received: int,
    currency: str,
    charge_id: str | None,
    reason: str,
    outbox: Outbox,
) -> str:
    """The provider says the money arrived (a verified event): the order is paid, its stock
    leaves, its coupon counts, the ledger books the sale. Inside the caller's transaction."""
    order = await Order.filter(id=payment.order_id).select_for_update().get()  # type: ignore[attr-defined]
    if order.status not in (OrderStatus.PENDING, OrderStatus.CANCELLED):
        return "already_paid"
    if received != order.total_amount or currency != order.currency:
        log.warning("payment_amount_mismatch", order_id=str(order.id), received=received)
        return "amount_mismatch"
    lines = await OrderLine.filter(order_id=order.id)
    variants = {
        v.id: v
        for v in await Variant.filter(
            id__in=[line.variant_id for line in lines]  # type: ignore[attr-defined]
        )
    }
    items = [
        (variants[line.variant_id], line.quantity)  # type: ignore[attr-defined]
        for line in lines
        if line.variant_id in variants  # type: ignore[attr-defined]
    ]
    await inventory.commit(order_id=order.id, items=items, outbox=outbox)
    await discounts.redeem(order_id=order.id)
    payment.status = PaymentStatus.SUCCEEDED
    payment.provider_charge_id = charge_id or payment.provider_charge_id
    await payment.save(update_fields=["status", "provider_charge_id", "updated_at"])
    order.paid_at = utcnow()
    await transition(order, OrderStatus.PAID, reason=reason)
    await ledger.book_sale(order=order, payment_id=payment.id, provider=payment.provider)
    outbox.add(
        "order.paid",
        {
            "order_id": str(order.id),
            "user_id": str(order.user_id),  # type: ignore[attr-defined]
            "total_amount": order.total_amount,
            "currency": order.currency,
            "payment_id": str(payment.id),
        },
        subject=f"order:{order.id}",
    )
    outbox.notify(
        user_id=order.user_id,  # type: ignore[attr-defined]
        type="order.paid",
        title="Thank you: your order is confirmed",
        body=f"{order.total_amount / 100:.2f} {order.currency} received",
        link=f"/orders/{order.id}",
        order_id=str(order.id),
    )
    return "paid"


async def _adopt_payment(obj: dict[str, Any]) -> Payment | None:
    """A PaymentIntent we made but never recorded (the process stopped between Stripe's answer
    and our write), or the one a Checkout Session made before its session event came: its
    metadata names the order."""
    order_id = (obj.get("metadata") or {}).get("order_id")
    intent_id = obj.get("id")
    if not isinstance(order_id, str) or not isinstance(intent_id, str):
        return None
    try:
        order = await Order.get_or_none(id=UUID(order_id))
    except ValueError:
        return None
    if order is None:
        return None
    session_payment = await Payment.filter(
        order_id=order.id,
        provider=CHECKOUT_PROVIDER,
        status=PaymentStatus.REQUIRES_PAYMENT,
        provider_payment_id__startswith="cs_",
    ).first()
    if session_payment is not None:
        session_payment.provider_payment_id = intent_id
        await session_payment.save(update_fields=["provider_payment_id", "updated_at"])
        return session_payment
    return await Payment.create(
        order_id=order.id,
        provider=PROVIDER,
        provider_payment_id=intent_id,
        amount=order.total_amount,
        currency=order.currency,
    )


async def _session_payment(obj: dict[str, Any]) -> Payment | None:
    """The Payment of a Checkout Session (found by the session id it keeps in
    `provider_charge_id`), with the session's PaymentIntent recorded on it once Stripe names
    one, so refunds and charge events (which go by the PaymentIntent) find it. A session we
    made but never recorded is adopted by its metadata's order id."""
    session_id = obj.get("id")
    if not isinstance(session_id, str):
        return None
    payment = await Payment.filter(
        provider=CHECKOUT_PROVIDER, provider_charge_id=session_id
    ).first()
    if payment is None:
        payment = await _adopt_session(obj, session_id)
    if payment is None:
        return None
    intent_id = obj.get("payment_intent")
    if isinstance(intent_id, dict):  # expanded
        intent_id = intent_id.get("id")
    if (
        isinstance(intent_id, str)
        and payment.provider_payment_id != intent_id
        and not await Payment.exists(provider_payment_id=intent_id)
    ):
        payment.provider_payment_id = intent_id
        await payment.save(update_fields=["provider_payment_id", "updated_at"])
    return payment


async def _adopt_session(obj: dict[str, Any], session_id: str) -> Payment | None:
    order_id = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("order_id")
    if not isinstance(order_id, str):
        return None
    try:
        order = await Order.get_or_none(id=UUID(order_id))
    except ValueError:
        return None
    if order is None:
        return None
    return await Payment.create(
        order_id=order.id,
        provider=CHECKOUT_PROVIDER,
        provider_payment_id=session_id,
        provider_charge_id=session_id,
        amount=order.total_amount,
        currency=order.currency,
    )


async def _session_paid(obj: dict[str, Any], outbox: Outbox, *, reason: str) -> str:
    """`completed` settles when the money is in (`payment_status` paid); a delayed method
    (SEPA debit, ...) completes `unpaid` and settles on `async_payment_succeeded`."""
    payment = await _session_payment(obj)
    if payment is None:
        return "unknown_payment"
    if obj.get("payment_status") != "paid":
        return "awaiting_payment"
    return await settle_payment(
        payment=payment,
        received=int(obj.get("amount_total") or 0),
        currency=str(obj.get("currency", "")).upper(),
        charge_id=None,
        reason=reason,
        outbox=outbox,
    )


async def _session_failed(obj: dict[str, Any], *, expired: bool) -> str:
    """A session that expired unpaid, or whose delayed payment failed: like a PaymentIntent
    that was cancelled or failed, the pending order is cancelled and lets its stock go."""
    payment = await _session_payment(obj)
    if payment is None:
        return "unknown_payment"
    return await fail_payment(
        payment=payment,
        canceled=expired,
        reason="checkout session expired" if expired else "payment failed",
    )


async def _payment_failed(obj: dict[str, Any], *, canceled: bool) -> str:
    payment = await _payment(obj.get("id"))
    if payment is None:
        return "unknown_payment"
    return await fail_payment(payment=payment, canceled=canceled)


async def fail_payment(*, payment: Payment, canceled: bool, reason: str = "payment failed") -> str:
    """The provider gave up on the payment: a pending order is cancelled and lets go."""
    order = await Order.filter(id=payment.order_id).select_for_update().get()  # type: ignore[attr-defined]
    if order.status != OrderStatus.PENDING:
        return "stale"  # already paid (a late failure of an earlier attempt) or cancelled
    await inventory.release(order_id=order.id)
    await discounts.release_use(order_id=order.id)
    payment.status = PaymentStatus.CANCELLED if canceled else PaymentStatus.FAILED
    await payment.save(update_fields=["status", "updated_at"])
    await transition(order, OrderStatus.CANCELLED, reason=reason)
    return "cancelled"


def _timestamp(value: object) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int) else None


async def _subscription_changed(
    obj: dict[str, Any], *, deleted: bool, created: datetime | None
) -> str:
    """Status from the event's snapshot; an event older than one applied already is stale
    (Stripe does not promise order), and nothing comes back from cancelled."""
    sub = (
        await Subscription.filter(provider_subscription_id=str(obj.get("id")))
        .select_for_update()
        .first()
    )
    if sub is None:
        return "unknown_subscription"
    if (
        created is not None
        and sub.provider_event_at is not None
        and created < sub.provider_event_at
    ):
        return "stale"
    if sub.status == SubscriptionStatus.CANCELLED:
        return "stale"
    sub.provider_event_at = created or sub.provider_event_at
    status = {
        "active": SubscriptionStatus.ACTIVE,
        "trialing": SubscriptionStatus.ACTIVE,
        "past_due": SubscriptionStatus.PAST_DUE,
        "unpaid": SubscriptionStatus.PAST_DUE,
        "canceled": SubscriptionStatus.CANCELLED,
    }.get(str(obj.get("status")), SubscriptionStatus.INCOMPLETE)
    sub.status = SubscriptionStatus.CANCELLED if deleted else status
    sub.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    items = (obj.get("items") or {}).get("data") or [{}]
    end = obj.get("current_period_end") or items[0].get("current_period_end")
    sub.current_period_end = _timestamp(end) or sub.current_period_end
    await sub.save()
    return f"subscription_{sub.status}"


async def _invoice_failed(obj: dict[str, Any], outbox: Outbox) -> str:
    sub_id = obj.get("subscription") or (
        ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    )
    sub = (
        await Subscription.filter(provider_subscription_id=str(sub_id)).select_for_update().first()
    )
    if sub is None:
        return "unknown_subscription"
    sub.status = SubscriptionStatus.PAST_DUE
    sub.failed_payments += 1
    await sub.save(update_fields=["status", "failed_payments", "updated_at"])
    outbox.notify(
        user_id=sub.user_id,  # type: ignore[attr-defined]
        type="subscription.payment_failed",
        title="Your maintenance contract payment failed",
        body="Please update your payment method",
        link=f"/subscriptions/{sub.id}",
        subscription_id=str(sub.id),
    )
    return "subscription_past_due"
