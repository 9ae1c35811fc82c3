"""The catalog: products of three kinds with their variants, prices in minor units and stock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from tortoise.transactions import in_transaction

from core.errors import Conflict, NotFound, ValidationFailed
from db.models.commerce import BillingInterval, Product, ProductKind, Stock, TaxCategory, Variant


@dataclass(frozen=True, slots=True)
class PriceTier:
    """From `min_quantity` units on, each costs `price_amount` (bulk and tiered pricing)."""

    min_quantity: int
    price_amount: int


@dataclass(frozen=True, slots=True)
class VariantSpec:
    sku: str
    price_amount: int
    currency: str
    name: str = ""
    stock: int = 0
    track_inventory: bool = True
    allow_backorder: bool = False
    low_stock_threshold: int = 0
    promo_price_amount: int | None = None
    promo_starts_at: datetime | None = None
    promo_ends_at: datetime | None = None
    price_tiers: tuple[PriceTier, ...] = ()
    billing_interval: BillingInterval | None = None
    provider_price_id: str | None = None


@dataclass(frozen=True, slots=True)
class VariantView:
    id: UUID
    sku: str
    name: str
    price_amount: int
    current_price_amount: int
    currency: str
    billing_interval: str | None
    available: int | None  # None: not tracked
    price_tiers: list[dict[str, int]]


@dataclass(frozen=True, slots=True)
class ProductView:
    id: UUID
    slug: str
    name: str
    description: str
    kind: str
    tax_category: str
    variants: list[VariantView]


def current_price(variant: Variant, now: datetime, quantity: int = 1) -> int:
    """The unit price for `quantity` units now: the lowest of the list price, the promotional
    price inside its window, and the bulk tier the quantity reaches."""
    prices = [int(variant.price_amount)]
    promo = variant.promo_price_amount
    in_window = (variant.promo_starts_at is None or now >= variant.promo_starts_at) and (
        variant.promo_ends_at is None or now < variant.promo_ends_at
    )
    if promo is not None and in_window:
        prices.append(int(promo))
    prices.extend(
        int(tier["price_amount"])
        for tier in variant.price_tiers or []
        if quantity >= int(tier["min_quantity"])
    )
    return min(prices)


async def create_product(
    *,
    slug: str,
    name: str,
    kind: ProductKind,
    tax_category: TaxCategory,
    variants: list[VariantSpec],
    description: str = "",
) -> Product:
    if not variants:
        raise ValidationFailed("variants_required", "A product needs at least one variant")
    recurring = kind is ProductKind.MAINTENANCE_CONTRACT
    for spec in variants:
        if spec.price_amount < 0 or len(spec.currency) != 3:
            raise ValidationFailed("invalid_price", "Prices are non-negative minor units")
        if any(t.min_quantity < 2 or t.price_amount < 0 for t in spec.price_tiers):
            raise ValidationFailed("invalid_price", "Tiers start at 2 units, prices at 0")
        if recurring != (spec.billing_interval is not None):
            raise ValidationFailed(
                "invalid_billing_interval", "Maintenance contracts, and only they, recur"
            )
    if await Product.exists(slug=slug) or await Variant.exists(sku__in=[v.sku for v in variants]):
        raise Conflict("product_exists", "A product with this slug or SKU exists")
    async with in_transaction():
        product = await Product.create(
            slug=slug, name=name, kind=kind, tax_category=tax_category, description=description
        )
        for spec in variants:
            variant = await Variant.create(
                product_id=product.id,
                sku=spec.sku,
                name=spec.name,
                price_amount=spec.price_amount,
                currency=spec.currency.upper(),
                promo_price_amount=spec.promo_price_amount,
                promo_starts_at=spec.promo_starts_at,
                promo_ends_at=spec.promo_ends_at,
                price_tiers=[
                    {"min_quantity": t.min_quantity, "price_amount": t.price_amount}
                    for t in sorted(spec.price_tiers, key=lambda t: t.min_quantity)
                ],
                billing_interval=spec.billing_interval,
                provider_price_id=spec.provider_price_id,
                track_inventory=spec.track_inventory and kind is ProductKind.PHYSICAL,
                allow_backorder=spec.allow_backorder,
                low_stock_threshold=spec.low_stock_threshold,
            )
            await Stock.create(variant_id=variant.id, on_hand=spec.stock)
    return product


async def product_view(product: Product, *, now: datetime) -> ProductView:
    variants = await Variant.filter(product_id=product.id, active=True).order_by("sku")
    stocks = {
        s.variant_id: s  # type: ignore[attr-defined]
        for s in await Stock.filter(variant_id__in=[v.id for v in variants])
    }
    return ProductView(
        id=product.id,
        slug=product.slug,
        name=product.name,
        description=product.description,
        kind=ProductKind(product.kind).value,
        tax_category=TaxCategory(product.tax_category).value,
        variants=[
            VariantView(
                id=v.id,
                sku=v.sku,
                name=v.name,
                price_amount=v.price_amount,
                current_price_amount=current_price(v, now),
                currency=v.currency,
                billing_interval=v.billing_interval.value if v.billing_interval else None,
                available=(
                    stocks[v.id].on_hand - stocks[v.id].reserved
                    if v.track_inventory and v.id in stocks
                    else None
                ),
                price_tiers=list(v.price_tiers or []),
            )
            for v in variants
        ],
    )


async def list_products(*, now: datetime) -> list[ProductView]:
    rows = await Product.filter(active=True).order_by("name")
    return [await product_view(row, now=now) for row in rows]


async def get_product(*, product_id: UUID, now: datetime) -> ProductView:
    product = await Product.get_or_none(id=product_id, active=True)
    if product is None:
        raise NotFound("product_not_found", "No such product")
    return await product_view(product, now=now)
