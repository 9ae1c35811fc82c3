"""Sales figures for the dashboard: revenue by period, average order value, conversion (carts
to paid orders) and customer lifetime value. Amounts are per currency, in minor units."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from api.commerce.orders import PAID_STATES
from db.models.commerce import Cart, Order


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class PeriodSales:
    period: str  # 2026-11-24 or 2026-11
    currency: str
    orders: int
    gross_amount: int  # paid totals
    refunded_amount: int
    net_amount: int


@dataclass(frozen=True, slots=True)
class SalesSummary:
    periods: list[PeriodSales]
    average_order_value: dict[str, int]  # currency -> minor units
    carts: int
    paid_orders: int
    conversion_rate: float  # paid orders / carts created in the window
    customer_lifetime_value: dict[str, int]  # currency -> average net per paying customer


async def sales_summary(*, start: datetime, end: datetime, period: Period) -> SalesSummary:
    orders = await Order.filter(
        status__in=list(PAID_STATES), paid_at__gte=start, paid_at__lt=end
    ).values("user_id", "currency", "total_amount", "refunded_amount", "paid_at")
    buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    per_customer: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_currency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    fmt = "%Y-%m-%d" if period is Period.DAY else "%Y-%m"
    for row in orders:
        key = (row["paid_at"].strftime(fmt), row["currency"])
        bucket = buckets[key]
        bucket[0] += 1
        bucket[1] += row["total_amount"]
        bucket[2] += row["refunded_amount"]
        per_currency[row["currency"]][0] += 1
        per_currency[row["currency"]][1] += row["total_amount"]
        per_customer[row["currency"]][str(row["user_id"])] += (
            row["total_amount"] - row["refunded_amount"]
        )
    carts = await Cart.filter(created_at__gte=start, created_at__lt=end).count()
    return SalesSummary(
        periods=[
            PeriodSales(
                period=key[0],
                currency=key[1],
                orders=b[0],
                gross_amount=b[1],
                refunded_amount=b[2],
                net_amount=b[1] - b[2],
            )
            for key, b in sorted(buckets.items())
        ],
        average_order_value={c: v[1] // v[0] for c, v in per_currency.items()},
        carts=carts,
        paid_orders=len(orders),
        conversion_rate=round(len(orders) / carts, 4) if carts else 0.0,
        customer_lifetime_value={
            c: sum(values.values()) // len(values) for c, values in per_customer.items()
        },
    )
