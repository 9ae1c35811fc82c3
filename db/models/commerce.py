"""Commerce: catalog (products, variants, stock), carts, orders with their lines and status
history, payments, refunds, coupons, a double-entry ledger, processed webhook events and
subscriptions.

Money is an integer in minor units (cents) beside a three-letter ISO currency; rates are
integers in basis points (1900 = 19 %). Stock is counted per variant: `on_hand` units exist,
`reserved` of them are held by open checkouts (`StockReservation` rows say by whom and until
when); a reservation is taken with one conditional UPDATE so two checkouts for the last unit
cannot both get it. `WebhookEvent` is unique on (provider, event_id): an event id is processed
once, in the transaction that records it. Ledger entries belong to a `LedgerTransaction` whose
debits equal its credits (checked where they are written: api/commerce/ledger.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id


class ProductKind(StrEnum):
    PHYSICAL = "physical"
    SERVICE = "service"  # a one-off service: nothing to ship or stock
    MAINTENANCE_CONTRACT = "maintenance_contract"  # recurring, billed by subscription


class TaxCategory(StrEnum):
    STANDARD = "standard"
    REDUCED = "reduced"
    SERVICES = "services"
    EXEMPT = "exempt"


class BillingInterval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class CartStatus(StrEnum):
    OPEN = "open"
    CHECKED_OUT = "checked_out"


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLING = "fulfilling"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class ReservationStatus(StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"  # the order was paid: the units left stock
    RELEASED = "released"  # expired, failed or cancelled: the units are available again


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT = "requires_payment"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CouponKind(StrEnum):
    PERCENT = "percent"
    FIXED = "fixed"
    FREE_SHIPPING = "free_shipping"


class RedemptionStatus(StrEnum):
    RESERVED = "reserved"  # taken by an open checkout
    REDEEMED = "redeemed"  # the order was paid
    RELEASED = "released"  # the checkout expired or failed


class AccountKind(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    CONTRA_REVENUE = "contra_revenue"
    EXPENSE = "expense"


class SubscriptionStatus(StrEnum):
    INCOMPLETE = "incomplete"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"


class Product(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    slug = fields.CharField(max_length=120, unique=True)
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    kind = fields.CharEnumField(ProductKind, max_length=24)
    tax_category = fields.CharEnumField(TaxCategory, max_length=12, default=TaxCategory.STANDARD)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "products"


class Variant(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    product: fields.ForeignKeyRelation[Product] = fields.ForeignKeyField(
        "models.Product", related_name="variants", on_delete=fields.CASCADE
    )
    sku = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200, default="")
    price_amount = fields.BigIntField(description="Net unit price in minor units")
    currency = fields.CharField(max_length=3)
    promo_price_amount = fields.BigIntField(null=True, description="Promotional price, if any")
    promo_starts_at = fields.DatetimeField(null=True)
    promo_ends_at = fields.DatetimeField(null=True)
    price_tiers: fields.JSONField[list[dict[str, int]]] = fields.JSONField(
        default=list, description="Bulk prices: [{min_quantity, price_amount}], lowest wins"
    )
    billing_interval = fields.CharEnumField(BillingInterval, max_length=8, null=True)
    provider_price_id = fields.CharField(
        max_length=100, null=True, description="The provider's recurring price (Stripe price_...)"
    )
    track_inventory = fields.BooleanField(default=True)
    allow_backorder = fields.BooleanField(default=False)
    low_stock_threshold = fields.IntField(default=0)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "product_variants"


class Stock(Model):
    """Units of one variant: `on_hand - reserved` may be sold now (more with backorders)."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    variant: fields.OneToOneRelation[Variant] = fields.OneToOneField(
        "models.Variant", related_name="stock", on_delete=fields.CASCADE
    )
    on_hand = fields.IntField(default=0)
    reserved = fields.IntField(default=0)
    low_stock_alerted = fields.BooleanField(
        default=False, description="Set when inventory.low_stock went out, cleared on restock"
    )
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "stock_levels"


class Cart(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="carts", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(CartStatus, max_length=12, default=CartStatus.OPEN)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "carts"
        indexes = (("user_id", "status"),)


class CartLine(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    cart: fields.ForeignKeyRelation[Cart] = fields.ForeignKeyField(
        "models.Cart", related_name="lines", on_delete=fields.CASCADE
    )
    variant: fields.ForeignKeyRelation[Variant] = fields.ForeignKeyField(
        "models.Variant", related_name="cart_lines", on_delete=fields.CASCADE
    )
    quantity = fields.IntField()

    class Meta:
        table = "cart_lines"
        unique_together = (("cart", "variant"),)


class Coupon(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    code = fields.CharField(max_length=40, unique=True)
    kind = fields.CharEnumField(CouponKind, max_length=16)
    percent_off = fields.IntField(null=True, description="1..100, for percent coupons")
    amount_off = fields.BigIntField(null=True, description="Minor units, for fixed coupons")
    currency = fields.CharField(max_length=3, null=True, description="Of amount_off")
    min_subtotal_amount = fields.BigIntField(default=0)
    valid_from = fields.DatetimeField(null=True)
    valid_until = fields.DatetimeField(null=True)
    max_uses = fields.IntField(null=True, description="Over all customers, null = unlimited")
    max_uses_per_customer = fields.IntField(null=True)
    times_used = fields.IntField(default=0, description="Reserved or redeemed, never released")
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "coupons"


class Order(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="orders", on_delete=fields.RESTRICT
    )
    cart: fields.ForeignKeyNullableRelation[Cart] = fields.ForeignKeyField(
        "models.Cart", related_name="orders", null=True, on_delete=fields.SET_NULL
    )
    status = fields.CharEnumField(OrderStatus, max_length=20, default=OrderStatus.PENDING)
    currency = fields.CharField(max_length=3)
    subtotal_amount = fields.BigIntField()
    discount_amount = fields.BigIntField(default=0)
    shipping_amount = fields.BigIntField(default=0)
    tax_amount = fields.BigIntField(default=0)
    total_amount = fields.BigIntField()
    refunded_amount = fields.BigIntField(default=0)
    country = fields.CharField(max_length=2)
    region = fields.CharField(max_length=10, default="", description="US state, if any")
    vat_id = fields.CharField(max_length=20, default="")
    reverse_charge = fields.BooleanField(default=False)
    coupon: fields.ForeignKeyNullableRelation[Coupon] = fields.ForeignKeyField(
        "models.Coupon", related_name="orders", null=True, on_delete=fields.SET_NULL
    )
    expires_at = fields.DatetimeField(description="An unpaid order is cancelled after this")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    paid_at = fields.DatetimeField(null=True)

    class Meta:
        table = "orders"
        indexes = (("user_id", "created_at"), ("status", "expires_at"))


class OrderLine(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="lines", on_delete=fields.CASCADE
    )
    variant: fields.ForeignKeyNullableRelation[Variant] = fields.ForeignKeyField(
        "models.Variant", related_name="order_lines", null=True, on_delete=fields.SET_NULL
    )
    product_name = fields.CharField(max_length=200)
    sku = fields.CharField(max_length=64)
    kind = fields.CharEnumField(ProductKind, max_length=24)
    tax_category = fields.CharEnumField(TaxCategory, max_length=12)
    quantity = fields.IntField()
    unit_price_amount = fields.BigIntField()
    discount_amount = fields.BigIntField(default=0)
    net_amount = fields.BigIntField(description="quantity * unit price - discount")
    tax_amount = fields.BigIntField(default=0)
    total_amount = fields.BigIntField()
    tax_breakdown: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)

    class Meta:
        table = "order_lines"


class OrderStatusChange(Model):
    """The order's history: every transition, with why."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="status_changes", on_delete=fields.CASCADE
    )
    from_status = fields.CharEnumField(OrderStatus, max_length=20, null=True)
    to_status = fields.CharEnumField(OrderStatus, max_length=20)
    reason = fields.CharField(max_length=200, default="")
    actor: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="order_status_changes", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "order_status_changes"


class StockReservation(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    variant: fields.ForeignKeyRelation[Variant] = fields.ForeignKeyField(
        "models.Variant", related_name="reservations", on_delete=fields.CASCADE
    )
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="reservations", on_delete=fields.CASCADE
    )
    quantity = fields.IntField()
    status = fields.CharEnumField(
        ReservationStatus, max_length=10, default=ReservationStatus.ACTIVE
    )
    expires_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stock_reservations"
        indexes = (("status", "expires_at"),)


class CouponRedemption(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    coupon: fields.ForeignKeyRelation[Coupon] = fields.ForeignKeyField(
        "models.Coupon", related_name="redemptions", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="coupon_redemptions", on_delete=fields.CASCADE
    )
    order: fields.OneToOneRelation[Order] = fields.OneToOneField(
        "models.Order", related_name="coupon_redemption", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(
        RedemptionStatus, max_length=10, default=RedemptionStatus.RESERVED
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "coupon_redemptions"
        indexes = (("coupon_id", "user_id"),)


class Payment(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="payments", on_delete=fields.CASCADE
    )
    provider = fields.CharField(max_length=20)
    provider_payment_id = fields.CharField(max_length=100, unique=True)
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(
        PaymentStatus, max_length=20, default=PaymentStatus.REQUIRES_PAYMENT
    )
    provider_charge_id = fields.CharField(max_length=100, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "payments"


class Refund(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="refunds", on_delete=fields.CASCADE
    )
    payment: fields.ForeignKeyRelation[Payment] = fields.ForeignKeyField(
        "models.Payment", related_name="refunds", on_delete=fields.CASCADE
    )
    provider_refund_id = fields.CharField(max_length=100, null=True, unique=True)
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(RefundStatus, max_length=10, default=RefundStatus.PENDING)
    reason = fields.CharField(max_length=200, default="")
    created_by: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="refunds_made", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "refunds"


class LedgerAccount(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    code = fields.CharField(max_length=60, unique=True)
    name = fields.CharField(max_length=120)
    kind = fields.CharEnumField(AccountKind, max_length=16)

    class Meta:
        table = "ledger_accounts"


class LedgerTransaction(Model):
    """One journal entry: its entries' debits equal their credits, in one currency."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    reference = fields.CharField(
        max_length=120, unique=True, description="What it books, once: payment:<id>, refund:<id>"
    )
    order: fields.ForeignKeyNullableRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="ledger_transactions", null=True, on_delete=fields.SET_NULL
    )
    currency = fields.CharField(max_length=3)
    description = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    synced_at = fields.DatetimeField(null=True, description="Exported to accounting, if ever")

    class Meta:
        table = "ledger_transactions"


class LedgerEntry(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    transaction: fields.ForeignKeyRelation[LedgerTransaction] = fields.ForeignKeyField(
        "models.LedgerTransaction", related_name="entries", on_delete=fields.CASCADE
    )
    account: fields.ForeignKeyRelation[LedgerAccount] = fields.ForeignKeyField(
        "models.LedgerAccount", related_name="entries", on_delete=fields.RESTRICT
    )
    debit = fields.BigIntField(default=0)
    credit = fields.BigIntField(default=0)

    class Meta:
        table = "ledger_entries"


class WebhookEvent(Model):
    """A provider's event, recorded in the transaction that processed it: never twice."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    provider = fields.CharField(max_length=20)
    event_id = fields.CharField(max_length=100)
    type = fields.CharField(max_length=100)
    outcome = fields.CharField(max_length=40, default="processed")
    payload: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_events"
        unique_together = (("provider", "event_id"),)


class Subscription(Model):
    """A recurring contract billed by the provider (Stripe Billing)."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    user: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.User", related_name="subscriptions", on_delete=fields.RESTRICT
    )
    variant: fields.ForeignKeyRelation[Variant] = fields.ForeignKeyField(
        "models.Variant", related_name="subscriptions", on_delete=fields.RESTRICT
    )
    provider = fields.CharField(max_length=20)
    provider_customer_id = fields.CharField(max_length=100, default="")
    provider_subscription_id = fields.CharField(max_length=100, unique=True)
    status = fields.CharEnumField(
        SubscriptionStatus, max_length=12, default=SubscriptionStatus.INCOMPLETE
    )
    cancel_at_period_end = fields.BooleanField(default=False)
    current_period_end = fields.DatetimeField(null=True)
    failed_payments = fields.IntField(default=0)
    provider_event_at = fields.DatetimeField(
        null=True, description="Creation time of the newest provider event applied"
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subscriptions"
