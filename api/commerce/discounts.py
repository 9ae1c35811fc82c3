"""Coupons: percent, fixed amount, free shipping; validity windows; limits per code and per
customer. A checkout takes a use under the coupon row's lock (released if the checkout expires
or fails), so the limits hold under concurrent checkouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from core.errors import Conflict, NotFound, ValidationFailed
from db.models.commerce import Coupon, CouponKind, CouponRedemption, RedemptionStatus


class CouponRefused(Conflict):
    default_code = "coupon_not_applicable"


@dataclass(frozen=True, slots=True)
class Discount:
    amount: int  # off the subtotal
    free_shipping: bool


def check_coupon_terms(coupon: Coupon, *, subtotal: int, currency: str, now: datetime) -> Discount:
    """What the coupon takes off this subtotal, or why it does not apply."""
    if not coupon.active:
        raise CouponRefused("coupon_inactive", "This code is no longer valid")
    if coupon.valid_from is not None and now < coupon.valid_from:
        raise CouponRefused("coupon_not_yet_valid", "This code is not valid yet")
    if coupon.valid_until is not None and now >= coupon.valid_until:
        raise CouponRefused("coupon_expired", "This code has expired")
    if subtotal < coupon.min_subtotal_amount:
        raise CouponRefused(
            "coupon_minimum_not_met",
            "The order is below this code's minimum",
            details={"min_subtotal_amount": coupon.min_subtotal_amount},
        )
    kind = CouponKind(coupon.kind)
    if kind is CouponKind.PERCENT:
        return Discount(amount=subtotal * (coupon.percent_off or 0) // 100, free_shipping=False)
    if kind is CouponKind.FIXED:
        if coupon.currency != currency:
            raise CouponRefused("coupon_currency_mismatch", "This code is for another currency")
        return Discount(amount=min(coupon.amount_off or 0, subtotal), free_shipping=False)
    return Discount(amount=0, free_shipping=True)


async def lock_coupon(code: str) -> Coupon:
    coupon = await Coupon.filter(code=code.strip().upper()).select_for_update().first()
    if coupon is None:
        raise NotFound("coupon_not_found", "No such code")
    return coupon


async def take_use(*, coupon: Coupon, user_id: UUID, order_id: UUID) -> None:
    """Count one use for the order (coupon row locked by the caller's transaction)."""
    if coupon.max_uses is not None and coupon.times_used >= coupon.max_uses:
        raise CouponRefused("coupon_exhausted", "This code has been used up")
    if coupon.max_uses_per_customer is not None:
        mine = (
            await CouponRedemption.filter(coupon_id=coupon.id, user_id=user_id)
            .exclude(status=RedemptionStatus.RELEASED)
            .count()
        )
        if mine >= coupon.max_uses_per_customer:
            raise CouponRefused(
                "coupon_customer_limit", "You have already used this code as often as allowed"
            )
    coupon.times_used += 1
    await coupon.save(update_fields=["times_used"])
    await CouponRedemption.create(coupon_id=coupon.id, user_id=user_id, order_id=order_id)


async def release_use(*, order_id: UUID) -> None:
    """The checkout expired or failed: its use counts no more."""
    redemption = await CouponRedemption.get_or_none(
        order_id=order_id, status=RedemptionStatus.RESERVED
    )
    if redemption is None:
        return
    coupon = await Coupon.filter(id=redemption.coupon_id).select_for_update().get()  # type: ignore[attr-defined]
    coupon.times_used = max(coupon.times_used - 1, 0)
    await coupon.save(update_fields=["times_used"])
    redemption.status = RedemptionStatus.RELEASED
    await redemption.save(update_fields=["status"])


async def redeem(*, order_id: UUID) -> None:
    await (
        CouponRedemption.filter(order_id=order_id)
        .exclude(status=RedemptionStatus.RELEASED)
        .update(status=RedemptionStatus.REDEEMED)
    )


def allocate(amount: int, weights: list[int]) -> list[int]:
    """Split `amount` over lines in proportion to `weights` (largest remainder: exact sum)."""
    total = sum(weights)
    if total == 0 or amount == 0:
        return [0] * len(weights)
    shares = [amount * w // total for w in weights]
    remainders = sorted(
        range(len(weights)), key=lambda i: (amount * weights[i]) % total, reverse=True
    )
    for i in remainders[: amount - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True, slots=True)
class CouponSpec:
    code: str
    kind: CouponKind
    percent_off: int | None = None
    amount_off: int | None = None
    currency: str | None = None
    min_subtotal_amount: int = 0
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_uses: int | None = None
    max_uses_per_customer: int | None = None


async def create_coupon(spec: CouponSpec) -> Coupon:
    kind = spec.kind
    if kind is CouponKind.PERCENT and not (spec.percent_off and 0 < spec.percent_off <= 100):
        raise ValidationFailed("invalid_coupon", "Percent coupons need percent_off in 1..100")
    if kind is CouponKind.FIXED and not (spec.amount_off and spec.amount_off > 0 and spec.currency):
        raise ValidationFailed("invalid_coupon", "Fixed coupons need amount_off and currency")
    code = spec.code.strip().upper()
    if await Coupon.exists(code=code):
        raise Conflict("coupon_exists", "A coupon with this code exists")
    return await Coupon.create(
        code=code,
        kind=kind,
        percent_off=spec.percent_off,
        amount_off=spec.amount_off,
        currency=spec.currency,
        min_subtotal_amount=spec.min_subtotal_amount,
        valid_from=spec.valid_from,
        valid_until=spec.valid_until,
        max_uses=spec.max_uses,
        max_uses_per_customer=spec.max_uses_per_customer,
    )
