"""Checkout: price the cart on the server (prices, discounts, shipping, tax), turn it into a
pending order that holds its stock and coupon, and open a Stripe PaymentIntent for the total
(or a hosted Stripe Checkout Session, or a PayPal order).

The order becomes `paid` only from the provider's verified webhook (webhooks.py). An order not
paid by `expires_at` is cancelled and gives its stock and coupon back (`expire_checkouts`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from tortoise.transactions import in_transaction

from api.commerce import discounts, inventory
from api.commerce.cart import cart_items
from api.commerce.catalog import current_price
from api.commerce.checkout_session import (
    ReturnUrls,
    check_return_urls,
    session_expires_at,
    short_id,
)
from api.commerce.events import Outbox
from api.commerce.orders import OrderView, order_view, transition
from api.commerce.payments_paypal import PayPalError, PayPalGateway
from api.commerce.payments_stripe import (
    CHECKOUT_PROVIDER,
    PROVIDER,
    PaymentProviderError,
    StripeGateway,
)
from api.commerce.tax import Destination, TaxPart, TaxRules, is_reverse_charge, tax_line
from api.commerce.vies import VatIdStatus, ViesClient
from core.bus import EventBus
from core.errors import Conflict, ServiceUnavailable, ValidationFailed
from core.logs import get_logger
from db.models.commerce import (
    Cart,
    CartStatus,
    Coupon,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
    Payment,
    PaymentStatus,
    Product,
    ProductKind,
    TaxCategory,
    Variant,
)

log = get_logger(__name__)

# Flat shipping per currency for orders with physical goods (minor units).
SHIPPING_RATES = {"EUR": 590, "USD": 790, "GBP": 590, "CHF": 900}
MIN_CHARGE = 50  # Stripe refuses smaller charges


@dataclass(frozen=True, slots=True)
class PricedLine:
    variant: Variant
    product_name: str
    sku: str
    kind: ProductKind
    tax_category: TaxCategory
    quantity: int
    unit_price_amount: int
    discount_amount: int
    net_amount: int
    tax: list[TaxPart]

    @property
    def tax_amount(self) -> int:
        return sum(part.amount for part in self.tax)


@dataclass(frozen=True, slots=True)
class Pricing:
    currency: str
    lines: list[PricedLine]
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int
    reverse_charge: bool


def price_order(
    *,
    items: list[tuple[Variant, Product, int]],
    destination: Destination,
    rules: TaxRules,
    now: datetime,
    coupon: Coupon | None = None,
) -> Pricing:
    """Every amount of an order, from the catalog and the rules alone."""
    if not items:
        raise Conflict("cart_empty", "The cart is empty")
    currencies = {variant.currency for variant, _, _ in items}
    if len(currencies) != 1:
        raise Conflict("mixed_currencies", "A cart holds one currency")
    currency = currencies.pop()
    gross = [current_price(variant, now, quantity) * quantity for variant, _, quantity in items]
    subtotal = sum(gross)
    discount = discounts.Discount(amount=0, free_shipping=False)
    if coupon is not None:
        discount = discounts.check_coupon_terms(
            coupon, subtotal=subtotal, currency=currency, now=now
        )
    shares = discounts.allocate(discount.amount, gross)
    lines = []
    for (variant, product, quantity), line_gross, share in zip(items, gross, shares, strict=True):
        net = line_gross - share
        category = TaxCategory(product.tax_category)
        lines.append(
            PricedLine(
                variant=variant,
                product_name=product.name,
                sku=variant.sku,
                kind=ProductKind(product.kind),
                tax_category=category,
                quantity=quantity,
                unit_price_amount=current_price(variant, now, quantity),
                discount_amount=share,
                net_amount=net,
                tax=tax_line(
                    net_amount=net, category=category, destination=destination, rules=rules
                ),
            )
        )
    physical = any(line.kind is ProductKind.PHYSICAL for line in lines)
    shipping = 0
    if physical and not discount.free_shipping:
        if currency not in SHIPPING_RATES:
            raise Conflict("no_shipping_rate", f"No shipping rate for {currency}")
        shipping = SHIPPING_RATES[currency]
    tax = sum(line.tax_amount for line in lines)
    return Pricing(
        currency=currency,
        lines=lines,
        subtotal_amount=subtotal,
        discount_amount=discount.amount,
        shipping_amount=shipping,
        tax_amount=tax,
        total_amount=subtotal - discount.amount + shipping + tax,
        reverse_charge=is_reverse_charge(destination, rules),
    )


class PaymentMethod(StrEnum):
    STRIPE = "stripe"
    STRIPE_CHECKOUT = "stripe_checkout"  # Stripe's hosted page: redirect to checkout_url
    PAYPAL = "paypal"


STRIPE_METHODS = frozenset({PaymentMethod.STRIPE, PaymentMethod.STRIPE_CHECKOUT})


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    order: OrderView
    provider: str
    payment_intent_id: str | None  # Stripe: confirm with client_secret in Stripe.js
    client_secret: str | None
    paypal_order_id: str | None = None  # PayPal: send the buyer to approve_url, then capture
    approve_url: str | None = None
    checkout_session_id: str | None = None  # Stripe Checkout: send the buyer to checkout_url
    checkout_url: str | None = None


async def confirm_vat_id(
    destination: Destination, *, rules: TaxRules, vies: ViesClient | None
) -> Destination:
    """Reverse charge needs a registered business: VIES is asked (when configured) about a VAT
    id that would make the order reverse-charged. Not registered: 422. VIES unavailable: the
    order is taxed as for a consumer (the customer reclaims the VAT), never reverse-charged
    on an unchecked id."""
    if vies is None or not is_reverse_charge(destination, rules):
        return destination
    answer = await vies.check(destination.vat_id)
    if answer.status is VatIdStatus.INVALID:
        raise ValidationFailed(
            "vat_id_not_registered",
            "VIES does not know this VAT id as registered",
            details={"vat_id": destination.vat_id},
        )
    if answer.status is VatIdStatus.UNAVAILABLE:
        log.warning("vat_id_unconfirmed", country=destination.country)
        return replace(destination, vat_id_confirmed=False)
    return destination


async def checkout(
    *,
    user_id: UUID,
    destination: Destination,
    coupon_code: str | None,
    gateway: StripeGateway | None,
    bus: EventBus,
    rules: TaxRules,
    now: datetime,
    reservation: timedelta,
    method: PaymentMethod = PaymentMethod.STRIPE,
    paypal: PayPalGateway | None = None,
    public_url: str = "",
    success_url: str | None = None,
    cancel_url: str | None = None,
    vies: ViesClient | None = None,
) -> CheckoutResult:
    """Cart -> pending order holding stock and coupon -> a PaymentIntent (or a Checkout
    Session, or a PayPal order) for its total. `success_url`/`cancel_url` (Checkout Sessions
    only) are paths on `public_url`'s origin; by default the order's page."""
    if (method in STRIPE_METHODS and gateway is None) or (
        method is PaymentMethod.PAYPAL and paypal is None
    ):
        raise ServiceUnavailable("payments_unavailable", f"{method.value} is not configured")
    if method is not PaymentMethod.STRIPE_CHECKOUT and (success_url or cancel_url):
        raise ValidationFailed(
            "return_url_not_allowed", "Return URLs are only for Stripe Checkout Sessions"
        )
    returns = check_return_urls(
        success_url=success_url, cancel_url=cancel_url, public_url=public_url
    )
    destination = await confirm_vat_id(destination, rules=rules, vies=vies)
    outbox = Outbox()
    async with in_transaction():
        # The cart row's lock makes a double submit check out once: the second finds it gone.
        cart = (
            await Cart.filter(user_id=user_id, status=CartStatus.OPEN)
            .order_by("created_at")
            .select_for_update()
            .first()
        )
        if cart is None:
            raise Conflict("cart_empty", "The cart is empty")
        items = await cart_items(cart.id)
        coupon = await discounts.lock_coupon(coupon_code) if coupon_code else None
        pricing = price_order(
            items=items, destination=destination, rules=rules, now=now, coupon=coupon
        )
        if pricing.total_amount < MIN_CHARGE:
            raise ValidationFailed("amount_too_small", "The total is below the smallest charge")
        order = await Order.create(
            user_id=user_id,
            cart_id=cart.id,
            currency=pricing.currency,
            subtotal_amount=pricing.subtotal_amount,
            discount_amount=pricing.discount_amount,
            shipping_amount=pricing.shipping_amount,
            tax_amount=pricing.tax_amount,
            total_amount=pricing.total_amount,
            country=destination.country,
            region=destination.region,
            vat_id=destination.vat_id,
            reverse_charge=pricing.reverse_charge,
            coupon_id=coupon.id if coupon else None,
            expires_at=now + reservation,
        )
        for line in pricing.lines:
            await OrderLine.create(
                order_id=order.id,
                variant_id=line.variant.id,
                product_name=line.product_name,
                sku=line.sku,
                kind=line.kind,
                tax_category=line.tax_category,
                quantity=line.quantity,
                unit_price_amount=line.unit_price_amount,
                discount_amount=line.discount_amount,
                net_amount=line.net_amount,
                tax_amount=line.tax_amount,
                total_amount=line.net_amount + line.tax_amount,
                tax_breakdown=[part.wire() for part in line.tax],
            )
        await OrderStatusChange.create(
            order_id=order.id, to_status=OrderStatus.PENDING, reason="checkout", actor_id=user_id
        )
        await inventory.reserve(
            order_id=order.id,
            items=[(line.variant, line.quantity) for line in pricing.lines],
            expires_at=order.expires_at,
        )
        if coupon is not None:
            await discounts.take_use(coupon=coupon, user_id=user_id, order_id=order.id)
        cart.status = CartStatus.CHECKED_OUT
        await cart.save(update_fields=["status", "updated_at"])
    try:
        payment = await _open_payment(
            order=order,
            method=method,
            gateway=gateway,
            paypal=paypal,
            returns=returns,
            public_url=public_url,
            now=now,
        )
    except (PaymentProviderError, PayPalError):
        await cancel_order(order_id=order.id, reason="payment_provider_error")
        raise
    await Payment.create(
        order_id=order.id,
        provider=method.value,
        provider_payment_id=(
            payment.paypal_order_id or payment.payment_intent_id or payment.checkout_session_id
        ),
        # A Checkout Session keeps its id here for good (no migration for a column of its own)
        provider_charge_id=payment.checkout_session_id,
        amount=order.total_amount,
        currency=order.currency,
    )
    outbox.add(
        "order.created",
        {
            "order_id": str(order.id),
            "user_id": str(user_id),
            "total_amount": order.total_amount,
            "currency": order.currency,
            "status": OrderStatus.PENDING.value,
        },
        subject=f"order:{order.id}",
    )
    await outbox.publish(bus, actor_id=user_id)
    return CheckoutResult(
        order=await order_view(order),
        provider=method.value,
        payment_intent_id=payment.payment_intent_id,
        client_secret=payment.client_secret,
        paypal_order_id=payment.paypal_order_id,
        approve_url=payment.approve_url,
        checkout_session_id=payment.checkout_session_id,
        checkout_url=payment.checkout_url,
    )


@dataclass(frozen=True, slots=True)
class _Opened:
    payment_intent_id: str | None = None
    client_secret: str | None = None
    paypal_order_id: str | None = None
    approve_url: str | None = None
    checkout_session_id: str | None = None
    checkout_url: str | None = None


async def _open_payment(
    *,
    order: Order,
    method: PaymentMethod,
    gateway: StripeGateway | None,
    paypal: PayPalGateway | None,
    returns: ReturnUrls,
    public_url: str,
    now: datetime,
) -> _Opened:
    """Ask the provider for a payment of the order's total, keyed by the order."""
    if method is PaymentMethod.PAYPAL and paypal is not None:
        made = await paypal.create_order(
            amount=order.total_amount,
            currency=order.currency,
            order_id=str(order.id),
            request_id=f"order:{order.id}:paypal_order",
        )
        return _Opened(paypal_order_id=made.id, approve_url=made.approve_url)
    if gateway is None:
        raise ServiceUnavailable("payments_unavailable", "Card payments are not configured")
    if method is PaymentMethod.STRIPE_CHECKOUT:
        success, cancel = returns.resolve(public_url=public_url, order_id=str(order.id))
        session = await gateway.create_checkout_session(
            amount=order.total_amount,
            currency=order.currency,
            name=f"Order {short_id(str(order.id))}",
            order_id=str(order.id),
            user_id=str(order.user_id),  # type: ignore[attr-defined]
            success_url=success,
            cancel_url=cancel,
            expires_at=session_expires_at(order_expires_at=order.expires_at, now=now),
            idempotency_key=f"order:{order.id}:checkout_session",
        )
        return _Opened(checkout_session_id=session.id, checkout_url=session.url)
    intent = await gateway.create_payment_intent(
        amount=order.total_amount,
        currency=order.currency,
        order_id=str(order.id),
        user_id=str(order.user_id),  # type: ignore[attr-defined]
        idempotency_key=f"order:{order.id}:payment_intent",
    )
    return _Opened(payment_intent_id=intent.id, client_secret=intent.client_secret)


async def cancel_order(*, order_id: UUID, reason: str) -> bool:
    """Cancel a pending order: its stock and coupon go back. False if it was not pending."""
    async with in_transaction():
        order = await Order.filter(id=order_id).select_for_update().first()
        if order is None or order.status != OrderStatus.PENDING:
            return False
        await inventory.release(order_id=order.id)
        await discounts.release_use(order_id=order.id)
        await transition(order, OrderStatus.CANCELLED, reason=reason)
    return True


async def expire_checkouts(
    *, now: datetime, gateway: StripeGateway | None = None, limit: int = 100
) -> int:
    """Cancel pending orders past their `expires_at`, and their PaymentIntents and Checkout
    Sessions at Stripe so they can no longer be paid; returns how many orders."""
    rows = (
        await Order.filter(status=OrderStatus.PENDING, expires_at__lt=now)
        .order_by("expires_at")
        .limit(limit)
        .only("id")
    )
    cancelled = 0
    for row in rows:
        if await cancel_order(order_id=row.id, reason="expired"):
            cancelled += 1
            if gateway is not None:
                await _cancel_intents(order_id=row.id, gateway=gateway)
    return cancelled


async def _cancel_intents(*, order_id: UUID, gateway: StripeGateway) -> None:
    payments = await Payment.filter(
        order_id=order_id,
        provider__in=(PROVIDER, CHECKOUT_PROVIDER),
        status=PaymentStatus.REQUIRES_PAYMENT,
    )
    for payment in payments:
        try:
            if payment.provider == CHECKOUT_PROVIDER and payment.provider_charge_id:
                await gateway.expire_checkout_session(
                    session_id=payment.provider_charge_id,
                    idempotency_key=f"order:{order_id}:expire:{payment.provider_charge_id}",
                )
            elif payment.provider == PROVIDER:
                await gateway.cancel_payment_intent(
                    intent_id=payment.provider_payment_id,
                    idempotency_key=f"order:{order_id}:cancel:{payment.provider_payment_id}",
                )
            else:
                continue
        except PaymentProviderError:
            continue  # paid meanwhile, or Stripe away: a late success still pays the order
        payment.status = PaymentStatus.CANCELLED
        await payment.save(update_fields=["status", "updated_at"])
