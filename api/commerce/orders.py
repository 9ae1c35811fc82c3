"""Orders: the state machine (every allowed transition is in `TRANSITIONS`), views, listing,
and fulfilment moves by staff. Payment and refund moves happen in webhooks.py and refunds.py,
always through `transition`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from api.commerce.events import Outbox
from core.bus import EventBus
from core.errors import Conflict, Forbidden, NotFound
from core.permissions import Permission
from core.principal import Principal
from db.models.commerce import Order, OrderLine, OrderStatus, OrderStatusChange

S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # An expired or failed checkout is cancelled; a payment that still succeeds pays it.
    S.PENDING: frozenset({S.PAID, S.CANCELLED}),
    S.CANCELLED: frozenset({S.PAID}),
    S.PAID: frozenset({S.FULFILLING, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FULFILLING: frozenset({S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.DELIVERED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset(
        {S.PARTIALLY_REFUNDED, S.REFUNDED, S.FULFILLING, S.SHIPPED, S.DELIVERED}
    ),
    S.REFUNDED: frozenset(),
}
# Moves staff make by hand; the others follow payments and refunds.
FULFILMENT_MOVES = frozenset({S.FULFILLING, S.SHIPPED, S.DELIVERED})
FULFILMENT_NOTICES = {
    S.FULFILLING: "We are preparing your order",
    S.SHIPPED: "Your order has shipped",
    S.DELIVERED: "Your order was delivered",
}
PAID_STATES = frozenset(
    {S.PAID, S.FULFILLING, S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}
)


class InvalidTransition(Conflict):
    default_code = "invalid_order_transition"


def can_transition(current: OrderStatus, new: OrderStatus) -> bool:
    return new in TRANSITIONS[current]


async def transition(
    order: Order, new: OrderStatus, *, reason: str = "", actor_id: UUID | None = None
) -> None:
    """Move a locked order (inside the caller's transaction) and record the change."""
    current = OrderStatus(order.status)
    if not can_transition(current, new):
        raise InvalidTransition(
            "invalid_order_transition",
            f"An order cannot go from {current} to {new}",
            details={"from": current.value, "to": new.value},
        )
    order.status = new
    await order.save(update_fields=["status", "updated_at", "paid_at", "refunded_amount"])
    await OrderStatusChange.create(
        order_id=order.id, from_status=current, to_status=new, reason=reason, actor_id=actor_id
    )


@dataclass(frozen=True, slots=True)
class OrderLineView:
    id: UUID
    variant_id: UUID | None
    product_name: str
    sku: str
    kind: str
    quantity: int
    unit_price_amount: int
    discount_amount: int
    net_amount: int
    tax_amount: int
    total_amount: int
    tax_breakdown: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class OrderView:
    id: UUID
    user_id: UUID
    status: str
    currency: str
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int
    refunded_amount: int
    country: str
    region: str
    vat_id: str
    reverse_charge: bool
    created_at: datetime
    paid_at: datetime | None
    lines: list[OrderLineView]


async def order_view(order: Order) -> OrderView:
    lines = await OrderLine.filter(order_id=order.id).order_by("id")
    return OrderView(
        id=order.id,
        user_id=order.user_id,  # type: ignore[attr-defined]
        status=OrderStatus(order.status).value,
        currency=order.currency,
        subtotal_amount=order.subtotal_amount,
        discount_amount=order.discount_amount,
        shipping_amount=order.shipping_amount,
        tax_amount=order.tax_amount,
        total_amount=order.total_amount,
        refunded_amount=order.refunded_amount,
        country=order.country,
        region=order.region,
        vat_id=order.vat_id,
        reverse_charge=order.reverse_charge,
        created_at=order.created_at,
        paid_at=order.paid_at,
        lines=[
            OrderLineView(
                id=line.id,
                variant_id=line.variant_id,  # type: ignore[attr-defined]
                product_name=line.product_name,
                sku=line.sku,
                kind=str(line.kind),
                quantity=line.quantity,
                unit_price_amount=line.unit_price_amount,
                discount_amount=line.discount_amount,
                net_amount=line.net_amount,
                tax_amount=line.tax_amount,
                total_amount=line.total_amount,
                tax_breakdown=list(line.tax_breakdown),
            )
            for line in lines
        ],
    )


async def readable_order(principal: Principal, order_id: UUID) -> Order:
    """The order if the caller owns it or may read any; else `order_not_found`."""
    order = await Order.get_or_none(id=order_id)
    if order is None or (
        order.user_id != principal.user_id  # type: ignore[attr-defined]
        and not principal.can(Permission.ORDERS_READ_ANY)
    ):
        raise NotFound("order_not_found", "No such order")
    return order


async def get_order(*, principal: Principal, order_id: UUID) -> OrderView:
    return await order_view(await readable_order(principal, order_id))


async def list_orders(
    *,
    principal: Principal,
    everyone: bool = False,
    user_id: UUID | None = None,
    limit: int = 50,
) -> list[OrderView]:
    """The caller's orders, newest first; with `everyone`, all (needs orders:read_any); with
    `user_id`, that customer's (someone else's need orders:read_any: `orders_forbidden`)."""
    may_read_any = principal.can(Permission.ORDERS_READ_ANY)
    query = Order.all()
    if user_id is not None:
        if user_id != principal.user_id and not may_read_any:
            raise Forbidden("orders_forbidden", "Only staff may list another customer's orders")
        query = query.filter(user_id=user_id)
    elif not (everyone and may_read_any):
        query = query.filter(user_id=principal.user_id)
    rows = await query.order_by("-created_at").limit(limit)
    return [await order_view(row) for row in rows]


async def move_order(
    *, principal: Principal, order_id: UUID, status: OrderStatus, bus: EventBus
) -> OrderView:
    """Staff move a paid order through fulfilment; the customer hears of each step."""
    if status not in FULFILMENT_MOVES:
        raise InvalidTransition(
            "invalid_order_transition", "Only fulfilment moves are made by hand"
        )
    outbox = Outbox()
    async with in_transaction():
        order = await Order.filter(id=order_id).select_for_update().first()
        if order is None:
            raise NotFound("order_not_found", "No such order")
        await transition(order, status, reason="staff", actor_id=principal.user_id)
        outbox.notify(
            user_id=order.user_id,  # type: ignore[attr-defined]
            type=f"order.{status.value}",
            title=FULFILMENT_NOTICES[status],
            link=f"/orders/{order.id}",
            order_id=str(order.id),
        )
    await outbox.publish(bus, actor_id=principal.user_id)
    return await order_view(order)
