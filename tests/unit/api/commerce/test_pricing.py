"""Server-side pricing: promotional windows, coupons, allocation, shipping, tax per line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.commerce.checkout import price_order
from api.commerce.discounts import CouponRefused, allocate
from api.commerce.tax import Destination, TaxRules
from core.errors import Conflict
from core.ids import new_id
from db.models.commerce import Coupon, CouponKind, Product, ProductKind, TaxCategory, Variant

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DE = Destination(country="DE")


def _item(
    price: int,
    quantity: int = 1,
    *,
    kind: ProductKind = ProductKind.PHYSICAL,
    currency: str = "EUR",
    category: TaxCategory = TaxCategory.STANDARD,
    **variant: object,
) -> tuple[Variant, Product, int]:
    product = Product(id=new_id(), slug="p", name="P", kind=kind, tax_category=category)
    return (
        Variant(id=new_id(), sku=f"S{price}", price_amount=price, currency=currency, **variant),
        product,
        quantity,
    )


def _coupon(kind: CouponKind, **fields: object) -> Coupon:
    return Coupon(code="X", kind=kind, active=True, min_subtotal_amount=0, **fields)


def test_allocation_is_exact_and_proportional() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert sum(allocate(999, [7_000, 2_000, 1])) == 999
    assert allocate(0, [5, 5]) == [0, 0]


def test_physical_order_with_shipping_and_vat() -> None:
    pricing = price_order(items=[_item(10_000, 2)], destination=DE, rules=TaxRules(), now=NOW)
    assert (
        pricing.subtotal_amount,
        pricing.shipping_amount,
        pricing.tax_amount,
        pricing.total_amount,
    ) == (20_000, 590, 3_800, 24_390)


def test_services_ship_nothing() -> None:
    pricing = price_order(
        items=[_item(50_000, kind=ProductKind.SERVICE, category=TaxCategory.SERVICES)],
        destination=DE,
        rules=TaxRules(),
        now=NOW,
    )
    assert (pricing.shipping_amount, pricing.total_amount) == (0, 59_500)


def test_promotional_price_only_inside_its_window() -> None:
    inside = _item(
        10_000,
        promo_price_amount=8_000,
        promo_starts_at=NOW - timedelta(days=1),
        promo_ends_at=NOW + timedelta(days=1),
    )
    after = _item(10_000, promo_price_amount=8_000, promo_ends_at=NOW)
    assert (
        price_order(items=[inside], destination=DE, rules=TaxRules(), now=NOW).subtotal_amount
        == 8_000
    )
    assert (
        price_order(items=[after], destination=DE, rules=TaxRules(), now=NOW).subtotal_amount
        == 10_000
    )


def test_percent_coupon_is_spread_over_lines_before_tax() -> None:
    pricing = price_order(
        items=[_item(10_000), _item(5_000, category=TaxCategory.REDUCED)],
        destination=DE,
        rules=TaxRules(),
        now=NOW,
        coupon=_coupon(CouponKind.PERCENT, percent_off=10),
    )
    assert pricing.discount_amount == 1_500
    assert [(line.discount_amount, line.net_amount, line.tax_amount) for line in pricing.lines] == [
        (1_000, 9_000, 1_710),
        (500, 4_500, 315),
    ]


def test_fixed_coupon_never_exceeds_the_subtotal_and_needs_its_currency() -> None:
    pricing = price_order(
        items=[_item(1_000, kind=ProductKind.SERVICE)],
        destination=DE,
        rules=TaxRules(),
        now=NOW,
        coupon=_coupon(CouponKind.FIXED, amount_off=5_000, currency="EUR"),
    )
    assert (pricing.discount_amount, pricing.total_amount) == (1_000, 0)
    with pytest.raises(CouponRefused) as caught:
        price_order(
            items=[_item(1_000)],
            destination=DE,
            rules=TaxRules(),
            now=NOW,
            coupon=_coupon(CouponKind.FIXED, amount_off=500, currency="USD"),
        )
    assert caught.value.code == "coupon_currency_mismatch"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"valid_from": NOW + timedelta(seconds=1)}, "coupon_not_yet_valid"),
        ({"valid_until": NOW}, "coupon_expired"),
        ({"active": False}, "coupon_inactive"),
        ({"min_subtotal_amount": 20_000}, "coupon_minimum_not_met"),
    ],
)
def test_coupon_terms(fields: dict[str, object], code: str) -> None:
    coupon = _coupon(CouponKind.PERCENT, percent_off=10)
    for name, value in fields.items():
        setattr(coupon, name, value)
    with pytest.raises(CouponRefused) as caught:
        price_order(items=[_item(10_000)], destination=DE, rules=TaxRules(), now=NOW, coupon=coupon)
    assert caught.value.code == code


def test_one_currency_per_order() -> None:
    with pytest.raises(Conflict) as caught:
        price_order(
            items=[_item(100), _item(200, currency="USD")],
            destination=DE,
            rules=TaxRules(),
            now=NOW,
        )
    assert caught.value.code == "mixed_currencies"


def test_bulk_tiers_apply_from_their_quantity() -> None:
    tiers = [{"min_quantity": 10, "price_amount": 900}, {"min_quantity": 50, "price_amount": 800}]
    for quantity, unit in ((9, 1_000), (10, 900), (49, 900), (50, 800)):
        pricing = price_order(
            items=[_item(1_000, quantity, kind=ProductKind.SERVICE, price_tiers=tiers)],
            destination=Destination(country="CH"),
            rules=TaxRules(),
            now=NOW,
        )
        assert pricing.lines[0].unit_price_amount == unit
        assert pricing.subtotal_amount == unit * quantity
