"""Stock per variant: set levels, reserve for an open checkout, commit when paid, release on
expiry or failure, and raise `inventory.low_stock` once when a level falls to its threshold.

Every change locks the variant's stock row (`SELECT ... FOR UPDATE`, in variant-id order so two
checkouts never wait on each other in a cycle) inside the caller's transaction: two checkouts
for the last unit queue on that row and the second sees it gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from tortoise.transactions import in_transaction

from api.commerce.events import Outbox
from core.bus import EventBus
from core.errors import Conflict, NotFound
from db.models.commerce import ReservationStatus, Stock, StockReservation, Variant


class OutOfStock(Conflict):
    default_code = "out_of_stock"


@dataclass(frozen=True, slots=True)
class StockView:
    variant_id: UUID
    on_hand: int
    reserved: int
    available: int
    allow_backorder: bool
    low_stock_threshold: int


async def _locked(variant_id: UUID) -> Stock:
    stock = await Stock.filter(variant_id=variant_id).select_for_update().first()
    if stock is None:
        stock = await Stock.create(variant_id=variant_id, on_hand=0, reserved=0)
        stock = await Stock.filter(id=stock.id).select_for_update().get()
    return stock


async def reserve(
    *, order_id: UUID, items: list[tuple[Variant, int]], expires_at: datetime
) -> None:
    """Hold `quantity` of each tracked variant for the order (inside a transaction), or raise
    `out_of_stock` naming the first SKU that is short."""
    for variant, quantity in sorted(items, key=lambda item: item[0].id):
        if not variant.track_inventory:
            continue
        stock = await _locked(variant.id)
        available = stock.on_hand - stock.reserved
        if available < quantity and not variant.allow_backorder:
            raise OutOfStock(
                "out_of_stock",
                f"Only {max(available, 0)} of {variant.sku} left",
                details={"sku": variant.sku, "available": max(available, 0)},
            )
        stock.reserved += quantity
        await stock.save(update_fields=["reserved", "updated_at"])
        await StockReservation.create(
            variant_id=variant.id, order_id=order_id, quantity=quantity, expires_at=expires_at
        )


async def _active(order_id: UUID) -> list[StockReservation]:
    rows = await StockReservation.filter(order_id=order_id, status=ReservationStatus.ACTIVE)
    return sorted(rows, key=lambda r: r.variant_id)  # type: ignore[attr-defined]


async def release(*, order_id: UUID) -> int:
    """Give back what the order holds (inside a transaction); returns the units released."""
    released = 0
    for row in await _active(order_id):
        stock = await _locked(row.variant_id)  # type: ignore[attr-defined]
        stock.reserved = max(stock.reserved - row.quantity, 0)
        await stock.save(update_fields=["reserved", "updated_at"])
        row.status = ReservationStatus.RELEASED
        await row.save(update_fields=["status"])
        released += row.quantity
    return released


async def commit(*, order_id: UUID, items: list[tuple[Variant, int]], outbox: Outbox) -> None:
    """The order is paid: its units leave stock. Active reservations turn into sales; a paid
    order whose reservation had lapsed takes its units anyway (a backorder to fill by hand)."""
    held = {row.variant_id: row for row in await _active(order_id)}  # type: ignore[attr-defined]
    for variant, quantity in sorted(items, key=lambda item: item[0].id):
        if not variant.track_inventory:
            continue
        stock = await _locked(variant.id)
        row = held.get(variant.id)
        if row is not None:
            stock.reserved = max(stock.reserved - row.quantity, 0)
            row.status = ReservationStatus.COMMITTED
            await row.save(update_fields=["status"])
        stock.on_hand -= quantity
        await _check_low(stock, variant, outbox)
        await stock.save(update_fields=["on_hand", "reserved", "low_stock_alerted", "updated_at"])


async def _check_low(stock: Stock, variant: Variant, outbox: Outbox) -> None:
    available = stock.on_hand - stock.reserved
    if available <= variant.low_stock_threshold and not stock.low_stock_alerted:
        stock.low_stock_alerted = True
        outbox.add(
            "inventory.low_stock",
            {
                "variant_id": str(variant.id),
                "sku": variant.sku,
                "on_hand": stock.on_hand,
                "available": available,
                "threshold": variant.low_stock_threshold,
            },
            subject=f"variant:{variant.id}",
        )


async def set_stock(*, variant_id: UUID, on_hand: int, bus: EventBus) -> StockView:
    """Staff count: the level becomes `on_hand`; the low-stock alarm re-arms above the threshold."""
    variant = await Variant.get_or_none(id=variant_id)
    if variant is None:
        raise NotFound("variant_not_found", "No such variant")
    outbox = Outbox()
    async with in_transaction():
        stock = await _locked(variant_id)
        stock.on_hand = on_hand
        if stock.on_hand - stock.reserved > variant.low_stock_threshold:
            stock.low_stock_alerted = False
        else:
            await _check_low(stock, variant, outbox)
        await stock.save(update_fields=["on_hand", "low_stock_alerted", "updated_at"])
    await outbox.publish(bus)
    return stock_view(stock, variant)


def stock_view(stock: Stock, variant: Variant) -> StockView:
    return StockView(
        variant_id=variant.id,
        on_hand=stock.on_hand,
        reserved=stock.reserved,
        available=stock.on_hand - stock.reserved,
        allow_backorder=variant.allow_backorder,
        low_stock_threshold=variant.low_stock_threshold,
    )
