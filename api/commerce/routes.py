"""Commerce over REST: catalog, cart, checkout, orders, refunds, coupons, stock,
subscriptions, analytics, and the Stripe webhook. Thin adapters over the services here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticated, principal_of, public, requires
from api.commerce import (
    analytics,
    cart,
    catalog,
    checkout,
    discounts,
    inventory,
    orders,
    paypal_flow,
    refunds,
    subscriptions,
    webhooks,
)
from api.commerce.service import Commerce
from api.commerce.tax import check_destination
from api.keys import BUS, COMMERCE
from api.openapi import operation
from api.requests import json_response, path_uuid, read_json, read_query
from core.clock import utcnow
from core.permissions import Permission
from db.models.commerce import (
    BillingInterval,
    CouponKind,
    OrderStatus,
    ProductKind,
    TaxCategory,
)

TAGS = ("commerce",)


# Bounds of what a request may say: amounts fit the BIGINT columns with room for sums (a
# trillion minor units), counts the INT columns.
MAX_AMOUNT = 10**12
MAX_COUNT = 1_000_000_000


class CommerceStrict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommerceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- bodies ----------------------------------------------------------------------------------


class PriceTierIn(CommerceStrict):
    min_quantity: int = Field(ge=2, le=10_000)
    price_amount: int = Field(ge=0, le=MAX_AMOUNT)


class VariantIn(CommerceStrict):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=200)
    price_amount: int = Field(ge=0, le=MAX_AMOUNT, description="Net price in minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    stock: int = Field(default=0, ge=0, le=MAX_COUNT)
    allow_backorder: bool = False
    low_stock_threshold: int = Field(default=0, ge=0, le=MAX_COUNT)
    promo_price_amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    promo_starts_at: datetime | None = None
    promo_ends_at: datetime | None = None
    price_tiers: list[PriceTierIn] = Field(default_factory=list, max_length=10)
    billing_interval: BillingInterval | None = None
    provider_price_id: str | None = Field(default=None, max_length=100)


class ProductIn(CommerceStrict):
    slug: str = Field(min_length=1, max_length=120, pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    kind: ProductKind
    tax_category: TaxCategory = TaxCategory.STANDARD
    variants: list[VariantIn] = Field(min_length=1, max_length=50)


class VariantOut(CommerceOut):
    id: UUID
    sku: str
    name: str
    price_amount: int
    current_price_amount: int
    currency: str
    billing_interval: str | None
    available: int | None
    price_tiers: list[dict[str, int]]


class ProductOut(CommerceOut):
    id: UUID
    slug: str
    name: str
    description: str
    kind: str
    tax_category: str
    variants: list[VariantOut]


class ProductList(BaseModel):
    items: list[ProductOut]


class CartLineIn(CommerceStrict):
    """Only what and how many: prices are the server's (any price field is refused)."""

    variant_id: UUID
    quantity: int = Field(ge=0, le=cart.MAX_QUANTITY)


class CartLineOut(CommerceOut):
    variant_id: UUID
    sku: str
    product_name: str
    quantity: int
    unit_price_amount: int
    currency: str


class CartOut(CommerceOut):
    id: UUID
    lines: list[CartLineOut]
    subtotal_amount: int
    currency: str | None


class CheckoutIn(CommerceStrict):
    country: str = Field(min_length=2, max_length=2)
    region: str = Field(default="", max_length=10)
    vat_id: str = Field(default="", max_length=20)
    coupon_code: str | None = Field(default=None, max_length=40)
    payment_method: checkout.PaymentMethod = checkout.PaymentMethod.STRIPE
    # stripe_checkout only: where Stripe's page sends the buyer back; a path on our own origin
    # (or a URL on it), never another site. Default: the order's page.
    success_url: str | None = Field(default=None, max_length=500)
    cancel_url: str | None = Field(default=None, max_length=500)


class OrderLineOut(CommerceOut):
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


class OrderOut(CommerceOut):
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
    lines: list[OrderLineOut]


class CheckoutOut(CommerceOut):
    order: OrderOut
    provider: str
    payment_intent_id: str | None
    client_secret: str | None
    paypal_order_id: str | None
    approve_url: str | None
    checkout_session_id: str | None
    checkout_url: str | None


class OrderList(BaseModel):
    items: list[OrderOut]


class OrdersQuery(BaseModel):
    everyone: bool = False
    user_id: UUID | None = Field(
        default=None, description="One customer's orders (another's need orders:read_any)"
    )
    limit: int = Field(default=50, ge=1, le=200)


class MoveIn(CommerceStrict):
    status: OrderStatus


class RefundIn(CommerceStrict):
    amount: int | None = Field(
        default=None, gt=0, le=MAX_AMOUNT, description="Minor units; omit for the rest"
    )
    reason: str = Field(default="", max_length=200)


class RefundOut(CommerceOut):
    id: UUID
    order_id: UUID
    amount: int
    currency: str
    status: str
    order_status: str
    order_refunded_amount: int


class CouponIn(CommerceStrict):
    code: str = Field(min_length=2, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    kind: CouponKind
    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off: int | None = Field(default=None, gt=0, le=MAX_AMOUNT)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    min_subtotal_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_uses: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_uses_per_customer: int | None = Field(default=None, ge=1, le=MAX_COUNT)


class CouponOut(BaseModel):
    id: UUID
    code: str
    kind: str


class StockIn(CommerceStrict):
    on_hand: int = Field(ge=0, le=MAX_COUNT)


class StockOut(CommerceOut):
    variant_id: UUID
    on_hand: int
    reserved: int
    available: int
    allow_backorder: bool
    low_stock_threshold: int


class SubscribeIn(CommerceStrict):
    variant_id: UUID


class SubscriptionOut(CommerceOut):
    id: UUID
    variant_id: UUID
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    client_secret: str | None


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class SalesQuery(BaseModel):
    start: datetime | None = None
    end: datetime | None = None
    period: analytics.Period = analytics.Period.DAY


class PeriodSalesOut(CommerceOut):
    period: str
    currency: str
    orders: int
    gross_amount: int
    refunded_amount: int
    net_amount: int


class SalesOut(CommerceOut):
    periods: list[PeriodSalesOut]
    average_order_value: dict[str, int]
    carts: int
    paid_orders: int
    conversion_rate: float
    customer_lifetime_value: dict[str, int]


class WebhookOut(CommerceOut):
    event_id: str
    type: str
    outcome: str
    duplicate: bool


def _commerce(request: web.Request) -> Commerce:
    return request.app[COMMERCE]


# -- catalog ---------------------------------------------------------------------------------


@public()
@operation(summary="Products on sale", tags=TAGS, responses={200: ProductList})
async def list_products(request: web.Request) -> web.Response:
    views = await catalog.list_products(now=utcnow())
    return json_response(ProductList(items=[ProductOut.model_validate(v) for v in views]))


@public()
@operation(summary="One product with its variants", tags=TAGS, responses={200: ProductOut})
async def get_product(request: web.Request) -> web.Response:
    product_id = path_uuid(request, "product_id", not_found="product_not_found")
    view = await catalog.get_product(product_id=product_id, now=utcnow())
    return json_response(ProductOut.model_validate(view))


@requires(Permission.CATALOG_MANAGE)
@operation(
    summary="Add a product with its variants",
    tags=TAGS,
    request=ProductIn,
    responses={201: ProductOut},
    auth=True,
)
async def create_product(request: web.Request) -> web.Response:
    body = await read_json(request, ProductIn)
    product = await catalog.create_product(
        slug=body.slug,
        name=body.name,
        kind=body.kind,
        tax_category=body.tax_category,
        description=body.description,
        variants=[
            catalog.VariantSpec(
                **v.model_dump(exclude={"price_tiers"}),
                price_tiers=tuple(catalog.PriceTier(**t.model_dump()) for t in v.price_tiers),
            )
            for v in body.variants
        ],
    )
    view = await catalog.product_view(product, now=utcnow())
    return json_response(ProductOut.model_validate(view), status=201)


@requires(Permission.CATALOG_MANAGE)
@operation(
    summary="Set a variant's stock count",
    tags=TAGS,
    request=StockIn,
    responses={200: StockOut},
    auth=True,
)
async def set_stock(request: web.Request) -> web.Response:
    body = await read_json(request, StockIn)
    variant_id = path_uuid(request, "variant_id", not_found="variant_not_found")
    view = await inventory.set_stock(
        variant_id=variant_id, on_hand=body.on_hand, bus=request.app[BUS]
    )
    return json_response(StockOut.model_validate(view))


@requires(Permission.CATALOG_MANAGE)
@operation(
    summary="Add a coupon", tags=TAGS, request=CouponIn, responses={201: CouponOut}, auth=True
)
async def create_coupon(request: web.Request) -> web.Response:
    body = await read_json(request, CouponIn)
    coupon = await discounts.create_coupon(discounts.CouponSpec(**body.model_dump()))
    return json_response(
        CouponOut(id=coupon.id, code=coupon.code, kind=CouponKind(coupon.kind).value), status=201
    )


# -- cart and checkout -----------------------------------------------------------------------


@authenticated()
@operation(summary="Your cart", tags=TAGS, responses={200: CartOut}, auth=True)
async def get_cart(request: web.Request) -> web.Response:
    view = await cart.view_cart(user_id=principal_of(request).user_id, now=utcnow())
    return json_response(CartOut.model_validate(view))


@authenticated()
@operation(
    summary="Put a quantity of a variant in your cart (0 removes it)",
    tags=TAGS,
    request=CartLineIn,
    responses={200: CartOut},
    auth=True,
)
async def set_cart_line(request: web.Request) -> web.Response:
    body = await read_json(request, CartLineIn)
    view = await cart.set_line(
        user_id=principal_of(request).user_id,
        variant_id=body.variant_id,
        quantity=body.quantity,
        now=utcnow(),
    )
    return json_response(CartOut.model_validate(view))


@authenticated()
@operation(
    summary="Check out the cart: a pending order and a Stripe PaymentIntent",
    description=(
        "Every amount is computed here; the order is paid when the provider says so. "
        "payment_method stripe (a PaymentIntent's client_secret), stripe_checkout (redirect "
        "to checkout_url, Stripe's hosted page) or paypal (approve_url). An EU business "
        "customer's VAT id is checked with VIES before reverse charge applies: "
        "`vat_id_not_registered` (422) when VIES does not know it; VAT is charged while VIES "
        "cannot answer."
    ),
    tags=TAGS,
    request=CheckoutIn,
    responses={201: CheckoutOut},
    auth=True,
)
async def create_checkout(request: web.Request) -> web.Response:
    body = await read_json(request, CheckoutIn)
    commerce = _commerce(request)
    result = await checkout.checkout(
        user_id=principal_of(request).user_id,
        destination=check_destination(country=body.country, region=body.region, vat_id=body.vat_id),
        coupon_code=body.coupon_code,
        gateway=commerce.gateway,
        bus=request.app[BUS],
        rules=commerce.rules,
        now=utcnow(),
        reservation=commerce.reservation,
        method=body.payment_method,
        paypal=commerce.paypal,
        public_url=commerce.public_url,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        vies=commerce.vies,
    )
    return json_response(CheckoutOut.model_validate(result), status=201)


# -- orders ----------------------------------------------------------------------------------


@authenticated()
@operation(
    summary="Your orders, newest first (everyone's with orders:read_any and everyone=true)",
    description="`user_id` lists one customer's orders: staff with orders:read_any may name "
    "anyone, others only themselves (`orders_forbidden`, 403).",
    tags=TAGS,
    responses={200: OrderList},
    auth=True,
)
async def list_orders(request: web.Request) -> web.Response:
    query = read_query(request, OrdersQuery)
    views = await orders.list_orders(
        principal=principal_of(request),
        everyone=query.everyone,
        user_id=query.user_id,
        limit=query.limit,
    )
    return json_response(OrderList(items=[OrderOut.model_validate(v) for v in views]))


def _order_id(request: web.Request) -> UUID:
    return path_uuid(request, "order_id", not_found="order_not_found")


@authenticated()
@operation(summary="One of your orders", tags=TAGS, responses={200: OrderOut}, auth=True)
async def get_order_detail(request: web.Request) -> web.Response:
    view = await orders.get_order(principal=principal_of(request), order_id=_order_id(request))
    return json_response(OrderOut.model_validate(view))


@requires(Permission.ORDERS_FULFIL)
@operation(
    summary="Move a paid order through fulfilment (fulfilling, shipped, delivered)",
    tags=TAGS,
    request=MoveIn,
    responses={200: OrderOut},
    auth=True,
)
async def move_order(request: web.Request) -> web.Response:
    body = await read_json(request, MoveIn)
    view = await orders.move_order(
        principal=principal_of(request),
        order_id=_order_id(request),
        status=body.status,
        bus=request.app[BUS],
    )
    return json_response(OrderOut.model_validate(view))


@requires(Permission.ORDERS_REFUND)
@operation(
    summary="Refund an order, fully or partly, through the payment provider",
    tags=TAGS,
    request=RefundIn,
    responses={201: RefundOut},
    auth=True,
)
async def refund_order(request: web.Request) -> web.Response:
    body = await read_json(request, RefundIn)
    view = await refunds.refund_order(
        principal=principal_of(request),
        order_id=_order_id(request),
        amount=body.amount,
        reason=body.reason,
        gateway=_commerce(request).gateway,
        paypal=_commerce(request).paypal,
        bus=request.app[BUS],
    )
    return json_response(RefundOut.model_validate(view), status=201)


# -- subscriptions ---------------------------------------------------------------------------


@authenticated()
@operation(
    summary="Subscribe to a maintenance contract (Stripe Billing)",
    tags=TAGS,
    request=SubscribeIn,
    responses={201: SubscriptionOut},
    auth=True,
)
async def subscribe_contract(request: web.Request) -> web.Response:
    body = await read_json(request, SubscribeIn)
    view = await subscriptions.subscribe(
        user_id=principal_of(request).user_id,
        variant_id=body.variant_id,
        gateway=_commerce(request).gateway,
    )
    return json_response(SubscriptionOut.model_validate(view), status=201)


@authenticated()
@operation(summary="Your subscriptions", tags=TAGS, responses={200: SubscriptionList}, auth=True)
async def list_contract_subscriptions(request: web.Request) -> web.Response:
    views = await subscriptions.list_subscriptions(user_id=principal_of(request).user_id)
    return json_response(SubscriptionList(items=[SubscriptionOut.model_validate(v) for v in views]))


@authenticated()
@operation(
    summary="Cancel a subscription at the end of its period",
    tags=TAGS,
    responses={200: SubscriptionOut},
    auth=True,
)
async def cancel_subscription(request: web.Request) -> web.Response:
    subscription_id = path_uuid(request, "subscription_id", not_found="subscription_not_found")
    view = await subscriptions.cancel_at_period_end(
        user_id=principal_of(request).user_id,
        subscription_id=subscription_id,
        gateway=_commerce(request).gateway,
    )
    return json_response(SubscriptionOut.model_validate(view))


# -- analytics and webhooks ------------------------------------------------------------------


@requires(Permission.ORDERS_READ_ANY)
@operation(
    summary="Sales by period, average order value, conversion, customer lifetime value",
    tags=TAGS,
    responses={200: SalesOut},
    auth=True,
)
async def sales_analytics(request: web.Request) -> web.Response:
    query = read_query(request, SalesQuery)
    end = query.end or utcnow()
    start = query.start or end - timedelta(days=30)
    summary = await analytics.sales_summary(start=start, end=end, period=query.period)
    return json_response(SalesOut.model_validate(summary))


@public()
@operation(
    summary="Stripe's webhook (signed with Stripe-Signature; each event processed once)",
    tags=TAGS,
    responses={200: WebhookOut},
)
async def stripe_webhook(request: web.Request) -> web.Response:
    outcome = await webhooks.handle_stripe_webhook(
        payload=await request.read(),
        signature=request.headers.get("Stripe-Signature"),
        secret=_commerce(request).webhook_secret,
        bus=request.app[BUS],
    )
    return json_response(WebhookOut.model_validate(outcome))


@authenticated()
@operation(
    summary="Capture your PayPal payment after approving it at PayPal",
    description="The order turns paid when PayPal's verified webhook confirms the capture.",
    tags=TAGS,
    responses={200: OrderOut},
    auth=True,
)
async def capture_paypal(request: web.Request) -> web.Response:
    view = await paypal_flow.capture_paypal_order(
        principal=principal_of(request),
        order_id=_order_id(request),
        paypal=_commerce(request).paypal,
    )
    return json_response(OrderOut.model_validate(view))


@public()
@operation(
    summary="PayPal's webhook (verified through PayPal's API; each event processed once)",
    tags=TAGS,
    responses={200: WebhookOut},
)
async def paypal_webhook(request: web.Request) -> web.Response:
    commerce = _commerce(request)
    outcome = await paypal_flow.handle_paypal_webhook(
        payload=await request.read(),
        headers=dict(request.headers),
        paypal=commerce.paypal,
        webhook_id=commerce.paypal_webhook_id,
        bus=request.app[BUS],
    )
    return json_response(WebhookOut.model_validate(outcome))


@authenticated()
@operation(
    summary="Upgrade or downgrade a subscription to another plan (prorated)",
    tags=TAGS,
    request=SubscribeIn,
    responses={200: SubscriptionOut},
    auth=True,
)
async def change_subscription_plan(request: web.Request) -> web.Response:
    body = await read_json(request, SubscribeIn)
    subscription_id = path_uuid(request, "subscription_id", not_found="subscription_not_found")
    view = await subscriptions.change_plan(
        user_id=principal_of(request).user_id,
        subscription_id=subscription_id,
        variant_id=body.variant_id,
        gateway=_commerce(request).gateway,
    )
    return json_response(SubscriptionOut.model_validate(view))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/products", list_products)
    r.add_post("/api/v1/products", create_product)
    r.add_get("/api/v1/products/{product_id}", get_product)
    r.add_put("/api/v1/variants/{variant_id}/stock", set_stock)
    r.add_post("/api/v1/coupons", create_coupon)
    r.add_get("/api/v1/cart", get_cart)
    r.add_put("/api/v1/cart/lines", set_cart_line)
    r.add_post("/api/v1/checkout", create_checkout)
    r.add_get("/api/v1/orders", list_orders)
    r.add_get("/api/v1/orders/{order_id}", get_order_detail)
    r.add_post("/api/v1/orders/{order_id}/status", move_order)
    r.add_post("/api/v1/orders/{order_id}/refunds", refund_order)
    r.add_post("/api/v1/subscriptions", subscribe_contract)
    r.add_get("/api/v1/subscriptions", list_contract_subscriptions)
    r.add_post("/api/v1/subscriptions/{subscription_id}/cancel", cancel_subscription)
    r.add_post("/api/v1/subscriptions/{subscription_id}/plan", change_subscription_plan)
    r.add_get("/api/v1/commerce/analytics/sales", sales_analytics)
    r.add_post("/api/v1/orders/{order_id}/paypal/capture", capture_paypal)
    r.add_post("/api/v1/webhooks/stripe", stripe_webhook)
    r.add_post("/api/v1/webhooks/paypal", paypal_webhook)
