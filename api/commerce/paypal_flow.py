"""PayPal's side of checkout: capture an approved PayPal order, and its webhooks, verified
through PayPal's verification API and processed once per event id. As with Stripe, the order
becomes `paid` only from the verified `PAYMENT.CAPTURE.COMPLETED` event."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from api.commerce.events import Outbox
from api.commerce.orders import OrderView, order_view, readable_order
from api.commerce.payments_paypal import PROVIDER, PayPalGateway, to_minor
from api.commerce.refunds import reconcile_refunded
from api.commerce.webhooks import WebhookOutcome, fail_payment, settle_payment
from core.bus import EventBus
from core.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from core.logs import get_logger
from core.principal import Principal
from db.models.commerce import OrderStatus, Payment, PaymentStatus, WebhookEvent

log = get_logger(__name__)


class InvalidPayPalEvent(BadRequest):
    default_code = "invalid_signature"


async def capture_paypal_order(
    *, principal: Principal, order_id: UUID, paypal: PayPalGateway | None
) -> OrderView:
    """The buyer approved at PayPal: capture the money (the webhook then marks it paid)."""
    if paypal is None:
        raise ServiceUnavailable("payments_unavailable", "paypal is not configured")
    order = await readable_order(principal, order_id)
    if order.user_id != principal.user_id:  # type: ignore[attr-defined]
        raise NotFound("order_not_found", "No such order")
    payment = await Payment.get_or_none(
        order_id=order.id, provider=PROVIDER, status=PaymentStatus.REQUIRES_PAYMENT
    )
    if payment is None or order.status != OrderStatus.PENDING:
        raise Conflict("order_not_capturable", "This order has no PayPal payment to capture")
    captured = await paypal.capture_order(
        paypal_order_id=payment.provider_payment_id, request_id=f"order:{order.id}:capture"
    )
    if captured.capture_id is not None:
        await Payment.filter(id=payment.id).update(provider_charge_id=captured.capture_id)
    return await order_view(order)


async def handle_paypal_webhook(
    *,
    payload: bytes,
    headers: dict[str, str],
    paypal: PayPalGateway | None,
    webhook_id: str | None,
    bus: EventBus,
) -> WebhookOutcome:
    if paypal is None or webhook_id is None:
        raise ServiceUnavailable("webhooks_unavailable", "The PayPal webhook is not configured")
    try:
        event = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidPayPalEvent("invalid_signature", "The event is not valid JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise InvalidPayPalEvent("invalid_signature", "The event has no id")
    lowered = {k.lower(): v for k, v in headers.items()}
    if not await paypal.verify_webhook(headers=lowered, event=event, webhook_id=webhook_id):
        raise InvalidPayPalEvent("invalid_signature", "PayPal did not confirm this event")
    event_id, event_type = event["id"], str(event.get("event_type", ""))
    resource = event.get("resource") or {}
    outbox = Outbox()
    try:
        async with in_transaction():
            row = await WebhookEvent.create(
                provider=PROVIDER, event_id=event_id, type=event_type, payload=event
            )
            outcome = await _dispatch(event_type, resource, outbox)
            row.outcome = outcome
            await row.save(update_fields=["outcome"])
    except IntegrityError:
        if not await WebhookEvent.exists(provider=PROVIDER, event_id=event_id):
            raise
        return WebhookOutcome(
            event_id=event_id, type=event_type, outcome="duplicate", duplicate=True
        )
    await outbox.publish(bus)
    log.info("paypal_webhook", event_id=event_id, type=event_type, outcome=outcome)
    return WebhookOutcome(event_id=event_id, type=event_type, outcome=outcome, duplicate=False)


def _related_order(resource: dict[str, Any]) -> str | None:
    related = ((resource.get("supplementary_data") or {}).get("related_ids")) or {}
    value = related.get("order_id")
    return value if isinstance(value, str) else None


def _capture_of_refund(resource: dict[str, Any]) -> str | None:
    for link in resource.get("links", []):
        if link.get("rel") == "up" and "/captures/" in str(link.get("href", "")):
            return str(link["href"]).rstrip("/").rsplit("/", 1)[-1]
    return None


async def _dispatch(event_type: str, resource: dict[str, Any], outbox: Outbox) -> str:
    if event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED"):
        paypal_order = _related_order(resource)
        payment = await Payment.filter(provider=PROVIDER, provider_payment_id=paypal_order).first()
        if payment is None:
            return "unknown_payment"
        if event_type == "PAYMENT.CAPTURE.DENIED":
            return await fail_payment(payment=payment, canceled=False)
        amount = resource.get("amount") or {}
        currency = str(amount.get("currency_code", ""))
        return await settle_payment(
            payment=payment,
            received=to_minor(str(amount.get("value", "0")), currency),
            currency=currency,
            charge_id=str(resource.get("id")),
            reason=event_type,
            outbox=outbox,
        )
    if event_type == "PAYMENT.CAPTURE.REFUNDED":
        capture_id = _capture_of_refund(resource)
        payment = await Payment.filter(provider=PROVIDER, provider_charge_id=capture_id).first()
        breakdown = resource.get("seller_payable_breakdown") or {}
        total = (breakdown.get("total_refunded_amount") or {}).get("value")
        if payment is None or total is None:
            return "unknown_payment"
        return await reconcile_refunded(
            payment=payment, amount_refunded=to_minor(str(total), payment.currency), outbox=outbox
        )
    return "ignored"
