"""Refunds, full and partial, through the provider; each lands in the order's state and in
the ledger once. Refunds made at the provider directly arrive as `charge.refunded` webhooks
and are reconciled by the cumulative amount (`reconcile_refunded`)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from api.commerce import ledger
from api.commerce.events import Outbox
from api.commerce.orders import transition
from api.commerce.payments_paypal import PROVIDER as PAYPAL
from api.commerce.payments_paypal import PayPalError, PayPalGateway
from api.commerce.payments_stripe import PaymentProviderError, ProviderRefund, StripeGateway
from core.bus import EventBus
from core.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from core.principal import Principal
from db.models.commerce import (
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)

REFUNDABLE = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.FULFILLING,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.PARTIALLY_REFUNDED,
    }
)


@dataclass(frozen=True, slots=True)
class RefundView:
    id: UUID
    order_id: UUID
    amount: int
    currency: str
    status: str
    order_status: str
    order_refunded_amount: int


async def _pending_sum(order_id: UUID) -> int:
    row = (
        await Refund.filter(order_id=order_id, status=RefundStatus.PENDING)
        .annotate(total=Sum("amount"))
        .first()
        .values("total")
    )
    return int((row or {}).get("total") or 0)


async def apply_refund(*, order: Order, refund: Refund, outbox: Outbox) -> None:
    """Book a succeeded refund on a locked order (inside the caller's transaction)."""
    before = order.refunded_amount
    order.refunded_amount = before + refund.amount
    new = (
        OrderStatus.REFUNDED
        if order.refunded_amount >= order.total_amount
        else OrderStatus.PARTIALLY_REFUNDED
    )
    await transition(order, new, reason=f"refund {refund.id}")
    payment = await Payment.get(id=refund.payment_id)  # type: ignore[attr-defined]
    await ledger.book_refund(
        order=order,
        refund_id=refund.id,
        amount=refund.amount,
        refunded_before=before,
        provider=payment.provider,
    )
    outbox.add(
        "order.refunded",
        {
            "order_id": str(order.id),
            "refund_id": str(refund.id),
            "amount": refund.amount,
            "refunded_amount": order.refunded_amount,
            "currency": order.currency,
            "status": new.value,
        },
        subject=f"order:{order.id}",
    )
    outbox.notify(
        user_id=order.user_id,  # type: ignore[attr-defined]
        type="order.refunded",
        title="Your refund is on its way",
        body=f"{refund.amount / 100:.2f} {order.currency}",
        link=f"/orders/{order.id}",
        order_id=str(order.id),
    )


async def refund_order(
    *,
    principal: Principal,
    order_id: UUID,
    amount: int | None,
    reason: str,
    gateway: StripeGateway | None,
    bus: EventBus,
    paypal: PayPalGateway | None = None,
) -> RefundView:
    """Refund `amount` (None = all that is left) through the provider that took the money."""
    async with in_transaction():
        order = await Order.filter(id=order_id).select_for_update().first()
        if order is None:
            raise NotFound("order_not_found", "No such order")
        if OrderStatus(order.status) not in REFUNDABLE:
            raise Conflict("order_not_refundable", f"A {order.status} order cannot be refunded")
        left = order.total_amount - order.refunded_amount - await _pending_sum(order.id)
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            raise ValidationFailed(
                "refund_exceeds_balance",
                "The refund must be positive and at most what is left",
                details={"refundable_amount": left},
            )
        payment = await Payment.get(order_id=order.id, status=PaymentStatus.SUCCEEDED)
        if (payment.provider == PAYPAL and paypal is None) or (
            payment.provider != PAYPAL and gateway is None
        ):
            raise ServiceUnavailable("payments_unavailable", f"{payment.provider} is not set up")
        refund = await Refund.create(
            order_id=order.id,
            payment_id=payment.id,
            amount=amount,
            currency=order.currency,
            reason=reason,
            created_by_id=principal.user_id,
        )
    try:
        result = await _refund_at_provider(
            payment=payment, refund=refund, gateway=gateway, paypal=paypal
        )
    except (PaymentProviderError, PayPalError):
        await Refund.filter(id=refund.id).update(status=RefundStatus.FAILED)
        raise
    outbox = Outbox()
    async with in_transaction():
        order = await Order.filter(id=order_id).select_for_update().get()
        refund = await Refund.filter(id=refund.id).select_for_update().get()
        refund.provider_refund_id = result.id
        if result.status.lower() in ("failed", "canceled", "cancelled"):
            refund.status = RefundStatus.FAILED
        elif refund.status == RefundStatus.PENDING:
            refund.status = RefundStatus.SUCCEEDED
            await apply_refund(order=order, refund=refund, outbox=outbox)
        await refund.save(update_fields=["provider_refund_id", "status", "updated_at"])
    await outbox.publish(bus, actor_id=principal.user_id)
    return RefundView(
        id=refund.id,
        order_id=order.id,
        amount=refund.amount,
        currency=refund.currency,
        status=RefundStatus(refund.status).value,
        order_status=OrderStatus(order.status).value,
        order_refunded_amount=order.refunded_amount,
    )


async def _refund_at_provider(
    *,
    payment: Payment,
    refund: Refund,
    gateway: StripeGateway | None,
    paypal: PayPalGateway | None,
) -> ProviderRefund:
    if payment.provider == PAYPAL:
        if paypal is None or payment.provider_charge_id is None:
            raise PayPalError("payment_provider_error", "No PayPal capture to refund")
        made = await paypal.refund_capture(
            capture_id=payment.provider_charge_id,
            amount=refund.amount,
            currency=refund.currency,
            request_id=f"refund:{refund.id}",
        )
        return ProviderRefund(id=made.id, status=made.status)
    if gateway is None:
        raise PaymentProviderError("payment_provider_error", "Stripe is not set up")
    return await gateway.create_refund(
        payment_intent_id=payment.provider_payment_id,
        amount=refund.amount,
        idempotency_key=f"refund:{refund.id}",
        refund_id=str(refund.id),
    )


class EventTooEarly(ServiceUnavailable):
    """An event about a payment whose own success has not arrived yet: refused without being
    recorded, so the provider delivers it again later (both retry for days)."""

    default_code = "event_out_of_order"


async def reconcile_refunded(*, payment: Payment, amount_refunded: int, outbox: Outbox) -> str:
    """`charge.refunded` says `amount_refunded` in total: book what we do not know of yet
    (refunds made at the provider). Cumulative, so late or repeated events change nothing."""
    order = await Order.filter(id=payment.order_id).select_for_update().get()  # type: ignore[attr-defined]
    if order.status in (OrderStatus.PENDING, OrderStatus.CANCELLED) and amount_refunded > 0:
        raise EventTooEarly(
            "event_out_of_order", "The payment this refund belongs to is not in yet"
        )
    known = order.refunded_amount + await _pending_sum(order.id)
    extra = min(amount_refunded, order.total_amount) - known
    if extra <= 0 or OrderStatus(order.status) not in REFUNDABLE:
        return "already_known"
    refund = await Refund.create(
        order_id=order.id,
        payment_id=payment.id,
        amount=extra,
        currency=order.currency,
        reason="refunded at the provider",
        status=RefundStatus.SUCCEEDED,
    )
    await apply_refund(order=order, refund=refund, outbox=outbox)
    return "refund_booked"
