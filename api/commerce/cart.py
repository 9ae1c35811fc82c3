"""The customer's open cart: variants and quantities only; prices are the server's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from api.commerce.catalog import current_price
from core.errors import Conflict, NotFound, ValidationFailed
from db.models.commerce import Cart, CartLine, CartStatus, Product, ProductKind, Variant

MAX_QUANTITY = 100


@dataclass(frozen=True, slots=True)
class CartLineView:
    variant_id: UUID
    sku: str
    product_name: str
    quantity: int
    unit_price_amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class CartView:
    id: UUID
    lines: list[CartLineView]
    subtotal_amount: int
    currency: str | None


async def open_cart(user_id: UUID) -> Cart:
    cart = await Cart.filter(user_id=user_id, status=CartStatus.OPEN).order_by("created_at").first()
    if cart is None:
        cart = await Cart.create(user_id=user_id)
    return cart


async def cart_items(cart_id: UUID) -> list[tuple[Variant, Product, int]]:
    lines = await CartLine.filter(cart_id=cart_id).prefetch_related("variant__product")
    return [(line.variant, line.variant.product, line.quantity) for line in lines]


async def view_cart(*, user_id: UUID, now: datetime) -> CartView:
    cart = await open_cart(user_id)
    items = await cart_items(cart.id)
    lines = [
        CartLineView(
            variant_id=variant.id,
            sku=variant.sku,
            product_name=product.name,
            quantity=quantity,
            unit_price_amount=current_price(variant, now, quantity),
            currency=variant.currency,
        )
        for variant, product, quantity in sorted(items, key=lambda i: i[0].sku)
    ]
    return CartView(
        id=cart.id,
        lines=lines,
        subtotal_amount=sum(line.unit_price_amount * line.quantity for line in lines),
        currency=lines[0].currency if lines else None,
    )


async def set_line(*, user_id: UUID, variant_id: UUID, quantity: int, now: datetime) -> CartView:
    """Put `quantity` of a variant in the cart (0 removes it)."""
    if not 0 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed("invalid_quantity", f"Quantity must be 0..{MAX_QUANTITY}")
    variant = await Variant.get_or_none(id=variant_id, active=True).prefetch_related("product")
    if variant is None or not variant.product.active:
        raise NotFound("variant_not_found", "No such variant")
    if variant.product.kind == ProductKind.MAINTENANCE_CONTRACT:
        raise Conflict(
            "subscription_product", "Maintenance contracts are subscribed to, not bought"
        )
    cart = await open_cart(user_id)
    if quantity == 0:
        await CartLine.filter(cart_id=cart.id, variant_id=variant_id).delete()
    else:
        others = await cart_items(cart.id)
        if any(v.currency != variant.currency for v, _, _ in others if v.id != variant_id):
            raise Conflict("mixed_currencies", "A cart holds one currency")
        updated = await CartLine.filter(cart_id=cart.id, variant_id=variant_id).update(
            quantity=quantity
        )
        if not updated:
            await CartLine.create(cart_id=cart.id, variant_id=variant_id, quantity=quantity)
    return await view_cart(user_id=user_id, now=now)
