"""Commerce end to end over the REST API, on SQLite and PostgreSQL, with the real `stripe`
library talking to a Stripe-shaped server on loopback and webhooks signed as Stripe signs."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from api.commerce import checkout, ledger
from api.commerce.payments_stripe import StripeGateway
from api.keys import KEYS
from core.clock import utcnow
from core.settings import Settings
from db.connection import open_database
from db.models.chat import Notification
from db.models.commerce import (
    Coupon,
    LedgerEntry,
    LedgerTransaction,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Stock,
    StockReservation,
    WebhookEvent,
)
from tests.commerce_shop import Shop, open_shop
from tests.conftest import SettingsFactory
from tests.fakes.stripe_server import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, event, sign
from tests.fakes.vies_server import FakeVies
from tests.identity import sign_in


@pytest.fixture
async def stripe_fake(aiohttp_server: Any) -> tuple[FakeStripe, str]:
    fake = FakeStripe()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def vies_fake(aiohttp_server: Any) -> tuple[FakeVies, str]:
    fake = FakeVies({"FR40303265045": "SA ODYSSEE"})
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
def settings(
    make_settings: SettingsFactory,
    migrated_database_url: str,
    stripe_fake: tuple[FakeStripe, str],
    vies_fake: tuple[FakeVies, str],
) -> Settings:
    return make_settings(
        database_url=migrated_database_url,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_fake[1],
        vies_api_base=vies_fake[1],
    )


@pytest.fixture
async def shop(client: TestClient[Any, Any], stripe_fake: tuple[FakeStripe, str]) -> Shop:
    return await open_shop(client, stripe_fake[0], "order.*", "inventory.*", "notification.created")


async def _stock(url: str, variant_id: str) -> Stock:
    async with open_database(url):
        return await Stock.get(variant_id=UUID(variant_id))


async def test_buy_a_physical_product_end_to_end(shop: Shop, settings: Settings) -> None:
    # given a product with 5 units, in the customer's cart twice
    product = await shop.product(sku="BRKT-1", price=10_000, stock=5)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id, 2)

    # when the customer checks out from Germany
    status, body = await shop.checkout(country="DE")

    # then the server priced it: 2 x 100.00 + 5.90 shipping + 19 % VAT on the goods
    assert status == 201, body
    order = body["order"]
    assert (order["subtotal_amount"], order["shipping_amount"], order["tax_amount"]) == (
        20_000,
        590,
        3_800,
    )
    assert order["total_amount"] == 24_390
    assert order["status"] == "pending"
    assert order["lines"][0]["tax_breakdown"] == [
        {
            "jurisdiction": "DE",
            "tax": "vat",
            "rate_bp": 1900,
            "taxable_amount": 20_000,
            "amount": 3_800,
            "reverse_charge": False,
        }
    ]
    # and Stripe got a PaymentIntent for exactly that, form-encoded, keyed by the order
    (seen,) = shop.stripe.seen("/v1/payment_intents")
    assert seen.params["amount"] == "24390"
    assert seen.params["currency"] == "eur"
    assert seen.params["metadata"]["order_id"] == order["id"]
    assert seen.idempotency_key == f"order:{order['id']}:payment_intent"
    assert body["client_secret"] == shop.stripe.intents[body["payment_intent_id"]]["client_secret"]
    created = await shop.next_event("order.created")
    assert created.data["order_id"] == order["id"]
    # and two units are held, not sold
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (5, 2)

    # when Stripe says the payment succeeded
    outcome = await shop.pay(body["payment_intent_id"])

    # then the order is paid, the stock is gone, the ledger balances, the bus and inbox heard
    assert outcome["outcome"] == "paid"
    paid = await shop.order(order["id"])
    assert paid["status"] == "paid"
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (3, 0)
    event_paid = await shop.next_event("order.paid")
    assert event_paid.data["order_id"] == order["id"]
    assert event_paid.data["total_amount"] == 24_390
    async with open_database(settings.database_url):
        books = await ledger.balances(order_id=UUID(order["id"]))
        entries = await LedgerEntry.all()
        notes = await Notification.filter(user_id=shop.customer.user_id, type="order.paid")
    assert sum(e.debit for e in entries) == sum(e.credit for e in entries) == 24_390
    assert books[ledger.CASH].net_debit == 24_390
    assert books[ledger.SALES].credit == 20_000
    assert books[ledger.SHIPPING].credit == 590
    assert books[ledger.TAX].credit == 3_800
    assert len(notes) == 1


async def test_tampered_signature_is_refused_and_nothing_written(
    shop: Shop, settings: Settings
) -> None:
    product = await shop.product(sku="T-1")
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    payload = event(
        "payment_intent.succeeded", shop.stripe.intent_succeeded(body["payment_intent_id"])
    )
    signature = sign(payload)
    tampered = payload.replace(b'"amount": ', b'"amount": 1')

    status, answer = await shop.post_webhook(tampered, signature)
    assert status == 400
    assert answer["error"]["code"] == "invalid_signature"
    status, answer = await shop.post_webhook(payload, sign(payload, "whsec_wrong"))
    assert (status, answer["error"]["code"]) == (400, "invalid_signature")
    status, answer = await shop.post_webhook(payload, "")
    assert (status, answer["error"]["code"]) == (400, "invalid_signature")

    async with open_database(settings.database_url):
        assert await WebhookEvent.all().count() == 0
        assert (await Order.get(id=UUID(body["order"]["id"]))).status == OrderStatus.PENDING
        assert await LedgerTransaction.all().count() == 0


async def test_replayed_event_is_processed_once(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="R-1", stock=3)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id)
    _, body = await shop.checkout()
    obj = shop.stripe.intent_succeeded(body["payment_intent_id"])

    first = await shop.webhook("payment_intent.succeeded", obj, event_id="evt_same")
    again = await shop.webhook("payment_intent.succeeded", obj, event_id="evt_same")
    other_id = await shop.webhook("payment_intent.succeeded", obj, event_id="evt_other")

    assert first == (
        200,
        {
            "event_id": "evt_same",
            "type": "payment_intent.succeeded",
            "outcome": "paid",
            "duplicate": False,
        },
    )
    assert again[1]["duplicate"] is True
    assert other_id[1]["outcome"] == "already_paid"
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    async with open_database(settings.database_url):
        assert await LedgerTransaction.all().count() == 1
        assert await WebhookEvent.all().count() == 2


async def test_late_failure_after_success_changes_nothing(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="O-1", stock=3)
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    intent_id = body["payment_intent_id"]
    await shop.pay(intent_id)

    status, answer = await shop.webhook(
        "payment_intent.payment_failed",
        {**shop.stripe.intents[intent_id], "status": "requires_payment_method"},
    )

    assert (status, answer["outcome"]) == (200, "stale")
    assert (await shop.order(body["order"]["id"]))["status"] == "paid"


async def test_failed_payment_cancels_and_releases(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="F-1", stock=1)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id)
    _, body = await shop.checkout()

    status, answer = await shop.webhook(
        "payment_intent.payment_failed", shop.stripe.intents[body["payment_intent_id"]]
    )
    assert status == 200, answer

    assert answer["outcome"] == "cancelled"
    assert (await shop.order(body["order"]["id"]))["status"] == "cancelled"
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (1, 0)


async def test_client_sent_prices_are_refused(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="P-1", price=10_000)
    variant_id = product["variants"][0]["id"]

    resp = await shop.client.put(
        "/api/v1/cart/lines",
        json={"variant_id": variant_id, "quantity": 1, "unit_price_amount": 1},
        headers=shop.customer.headers,
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "validation_failed"
    cart = await (await shop.client.get("/api/v1/cart", headers=shop.customer.headers)).json()
    assert cart["lines"] == []

    await shop.add(variant_id)
    status, body = await shop.checkout(country="DE", total_amount=100)
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    async with open_database(settings.database_url):
        assert await Order.all().count() == 0
    assert shop.stripe.seen("/v1/payment_intents") == []


async def test_out_of_stock_checkout_writes_nothing(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="S-1", stock=1)
    await shop.add(product["variants"][0]["id"], 2)

    status, body = await shop.checkout()

    assert status == 409
    assert body["error"]["code"] == "out_of_stock"
    assert body["error"]["details"] == {"sku": "S-1", "available": 1}
    async with open_database(settings.database_url):
        assert await Order.all().count() == 0
        assert await StockReservation.all().count() == 0
    assert shop.stripe.requests == []


async def test_partial_then_full_refund(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="RF-1", price=10_000)
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout(country="DE")
    order_id = body["order"]["id"]
    await shop.pay(body["payment_intent_id"])
    total = body["order"]["total_amount"]  # 10000 + 590 + 1900
    assert total == 12_490

    resp = await shop.client.post(
        f"/api/v1/orders/{order_id}/refunds", json={"amount": 2_000}, headers=shop.admin.headers
    )
    partial = await resp.json()
    assert resp.status == 201, partial
    assert (partial["status"], partial["order_status"]) == ("succeeded", "partially_refunded")
    (seen,) = shop.stripe.seen("/v1/refunds")
    assert seen.params["amount"] == "2000"
    assert seen.params["payment_intent"] == body["payment_intent_id"]
    assert seen.idempotency_key == f"refund:{partial['id']}"
    refunded = await shop.next_event("order.refunded")
    assert refunded.data["amount"] == 2_000

    too_much = await shop.client.post(
        f"/api/v1/orders/{order_id}/refunds", json={"amount": total}, headers=shop.admin.headers
    )
    assert too_much.status == 422
    assert (await too_much.json())["error"]["details"] == {"refundable_amount": total - 2_000}

    resp = await shop.client.post(
        f"/api/v1/orders/{order_id}/refunds", json={}, headers=shop.admin.headers
    )
    rest = await resp.json()
    assert (rest["amount"], rest["order_status"], rest["order_refunded_amount"]) == (
        total - 2_000,
        "refunded",
        total,
    )
    # Stripe's charge.refunded afterwards: already known, nothing booked twice
    status, answer = await shop.webhook(
        "charge.refunded", shop.stripe.charge(body["payment_intent_id"])
    )
    assert status == 200, answer
    assert answer["outcome"] == "already_known"

    async with open_database(settings.database_url):
        books = await ledger.balances(order_id=UUID(order_id))
        assert await LedgerTransaction.all().count() == 3
    assert books[ledger.CASH].net_debit == 0
    assert books[ledger.TAX].net_debit == 0
    assert books[ledger.REFUNDS].debit == 10_590
    assert books[ledger.SALES].credit + books[ledger.SHIPPING].credit == 10_590


async def test_refund_made_at_stripe_is_reconciled(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="RX-1", price=10_000)
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout(country="US", region="OR")
    await shop.pay(body["payment_intent_id"])
    charge = shop.stripe.charge(body["payment_intent_id"])

    status, answer = await shop.webhook("charge.refunded", {**charge, "amount_refunded": 3_000})
    assert status == 200, answer

    assert answer["outcome"] == "refund_booked"
    order = await shop.order(body["order"]["id"])
    assert (order["status"], order["refunded_amount"]) == ("partially_refunded", 3_000)


async def test_refunds_need_the_permission(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="RP-1")
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    await shop.pay(body["payment_intent_id"])

    for who in (shop.customer, shop.staff):
        resp = await shop.client.post(
            f"/api/v1/orders/{body['order']['id']}/refunds", json={}, headers=who.headers
        )
        assert resp.status == 403
    assert shop.stripe.seen("/v1/refunds") == []


async def test_coupon_limits_per_customer_and_per_code(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="C-1", price=10_000, stock=10)
    variant_id = product["variants"][0]["id"]
    resp = await shop.client.post(
        "/api/v1/coupons",
        json={
            "code": "TENOFF",
            "kind": "percent",
            "percent_off": 10,
            "max_uses": 2,
            "max_uses_per_customer": 1,
        },
        headers=shop.staff.headers,
    )
    assert resp.status == 201

    await shop.add(variant_id)
    status, first = await shop.checkout(coupon_code="tenoff")
    assert status == 201, first
    assert first["order"]["discount_amount"] == 1_000
    assert first["order"]["lines"][0]["net_amount"] == 9_000
    assert first["order"]["tax_amount"] == 1_710

    await shop.add(variant_id)
    status, again = await shop.checkout(coupon_code="TENOFF")
    assert (status, again["error"]["code"]) == (409, "coupon_customer_limit")

    other = await sign_in(settings.database_url, shop.client.app[KEYS])
    await shop.add(variant_id, who=other)
    status, second = await shop.checkout(who=other, coupon_code="TENOFF")
    assert status == 201, second

    third = await sign_in(settings.database_url, shop.client.app[KEYS])
    await shop.add(variant_id, who=third)
    status, refused = await shop.checkout(who=third, coupon_code="TENOFF")
    assert (status, refused["error"]["code"]) == (409, "coupon_exhausted")
    async with open_database(settings.database_url):
        assert await Order.all().count() == 2


async def test_free_shipping_coupon_and_window(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="FS-1", price=10_000)
    await shop.add(product["variants"][0]["id"])
    await shop.client.post(
        "/api/v1/coupons",
        json={"code": "SHIPFREE", "kind": "free_shipping"},
        headers=shop.staff.headers,
    )
    await shop.client.post(
        "/api/v1/coupons",
        json={
            "code": "OLD",
            "kind": "fixed",
            "amount_off": 500,
            "currency": "EUR",
            "valid_until": "2020-01-01T00:00:00Z",
        },
        headers=shop.staff.headers,
    )

    status, expired = await shop.checkout(coupon_code="OLD")
    assert (status, expired["error"]["code"]) == (409, "coupon_expired")
    status, body = await shop.checkout(coupon_code="SHIPFREE")
    assert status == 201
    assert (body["order"]["shipping_amount"], body["order"]["total_amount"]) == (0, 11_900)


async def test_reverse_charge_for_an_eu_business(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="B-1", price=10_000)
    await shop.add(product["variants"][0]["id"])

    status, bad = await shop.checkout(country="FR", vat_id="FR123")
    assert (status, bad["error"]["code"]) == (422, "invalid_vat_id")
    status, body = await shop.checkout(country="FR", vat_id="FR 40 303265045")

    assert status == 201, body
    order = body["order"]
    assert (order["reverse_charge"], order["vat_id"], order["tax_amount"]) == (
        True,
        "FR40303265045",
        0,
    )
    assert order["lines"][0]["tax_breakdown"][0]["reverse_charge"] is True


async def test_reverse_charge_needs_a_vat_id_vies_knows(
    shop: Shop, settings: Settings, vies_fake: tuple[FakeVies, str]
) -> None:
    vies = vies_fake[0]
    product = await shop.product(sku="B-2", price=10_000)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id)

    status, unknown = await shop.checkout(country="FR", vat_id="FR 12 345678901")
    assert (status, unknown["error"]["code"]) == (422, "vat_id_not_registered")
    async with open_database(settings.database_url):
        assert await Order.filter(vat_id="FR12345678901").count() == 0
    vies.unavailable.add("FR")
    status, body = await shop.checkout(country="FR", vat_id="FR40303265045")
    assert status == 201, body
    taxed = body["order"]
    assert (taxed["reverse_charge"], taxed["vat_id"], taxed["tax_amount"]) == (
        False,
        "FR40303265045",
        2_000,  # France's 20 %: the customer reclaims it
    )
    vies.unavailable.clear()
    await shop.add(variant_id)
    status, body = await shop.checkout(country="FR", vat_id="FR40303265045")
    assert status == 201, body
    assert (body["order"]["reverse_charge"], body["order"]["tax_amount"]) == (True, 0)
    await shop.add(variant_id)
    status, again = await shop.checkout(country="FR", vat_id="FR40303265045")
    assert again["order"]["reverse_charge"] is True
    # a definite answer is cached; the domestic and consumer orders never ask
    assert vies.asked == ["FR12345678901", "FR40303265045", "FR40303265045"]
    await shop.add(variant_id)
    status, domestic = await shop.checkout(country="DE", vat_id="DE123456789")
    assert (status, domestic["order"]["reverse_charge"]) == (201, False)
    assert len(vies.asked) == 3


async def test_low_stock_is_announced_once(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="L-1", stock=3, low_stock_threshold=1)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id, 2)
    _, body = await shop.checkout()
    await shop.pay(body["payment_intent_id"])

    low = await shop.next_event("inventory.low_stock")
    assert low.data == {
        "variant_id": variant_id,
        "sku": "L-1",
        "on_hand": 1,
        "available": 1,
        "threshold": 1,
    }


async def test_fulfilment_moves_and_notices(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="M-1")
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    order_id = body["order"]["id"]

    early = await shop.client.post(
        f"/api/v1/orders/{order_id}/status", json={"status": "shipped"}, headers=shop.staff.headers
    )
    assert (early.status, (await early.json())["error"]["code"]) == (
        409,
        "invalid_order_transition",
    )
    await shop.pay(body["payment_intent_id"])
    for step in ("fulfilling", "shipped", "delivered"):
        resp = await shop.client.post(
            f"/api/v1/orders/{order_id}/status", json={"status": step}, headers=shop.staff.headers
        )
        assert resp.status == 200
        assert (await resp.json())["status"] == step
    async with open_database(settings.database_url):
        rows = await Notification.filter(user_id=shop.customer.user_id).order_by("id")
    kinds = [row.type for row in rows]
    assert kinds == ["order.paid", "order.fulfilling", "order.shipped", "order.delivered"]


async def test_orders_are_private(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="V-1")
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    stranger = await sign_in(settings.database_url, shop.client.app[KEYS])

    resp = await shop.client.get(f"/api/v1/orders/{body['order']['id']}", headers=stranger.headers)

    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "order_not_found"
    assert (await shop.order(body["order"]["id"], who=shop.staff))["id"] == body["order"]["id"]


async def test_orders_of_one_customer(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="U-1")
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    other = await sign_in(settings.database_url, shop.client.app[KEYS])
    await shop.add(product["variants"][0]["id"], who=other)
    await shop.checkout(who=other)
    customer_id = str(shop.customer.user_id)

    staff_view = await shop.client.get(
        "/api/v1/orders", params={"user_id": customer_id}, headers=shop.staff.headers
    )
    own_view = await shop.client.get(
        "/api/v1/orders", params={"user_id": customer_id}, headers=shop.customer.headers
    )
    prying = await shop.client.get(
        "/api/v1/orders", params={"user_id": customer_id}, headers=other.headers
    )

    assert staff_view.status == 200
    assert [o["id"] for o in (await staff_view.json())["items"]] == [body["order"]["id"]]
    assert [o["id"] for o in (await own_view.json())["items"]] == [body["order"]["id"]]
    assert prying.status == 403
    assert (await prying.json())["error"]["code"] == "orders_forbidden"


async def test_expired_checkout_gives_back_stock_and_coupon(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="E-1", stock=1)
    variant_id = product["variants"][0]["id"]
    await shop.client.post(
        "/api/v1/coupons",
        json={"code": "ONCE", "kind": "fixed", "amount_off": 500, "currency": "EUR", "max_uses": 1},
        headers=shop.staff.headers,
    )
    await shop.add(variant_id)
    _, body = await shop.checkout(coupon_code="ONCE")

    async with open_database(settings.database_url):
        assert await checkout.expire_checkouts(now=utcnow()) == 0
        assert await checkout.expire_checkouts(now=utcnow() + timedelta(hours=1)) == 1
        coupon = await Coupon.get(code="ONCE")
    assert coupon.times_used == 0
    assert (await shop.order(body["order"]["id"]))["status"] == "cancelled"
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (1, 0)

    # a payment that still succeeds afterwards pays the order and takes the unit
    await shop.pay(body["payment_intent_id"])
    assert (await shop.order(body["order"]["id"]))["status"] == "paid"
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (0, 0)


async def test_subscribe_to_a_maintenance_contract(shop: Shop, settings: Settings) -> None:
    product = await shop.product(
        sku="MC-1",
        kind="maintenance_contract",
        tax_category="services",
        price=9_900,
        stock=0,
        billing_interval="month",
        provider_price_id="price_maint_monthly",
    )
    variant_id = product["variants"][0]["id"]
    refused = await shop.client.put(
        "/api/v1/cart/lines",
        json={"variant_id": variant_id, "quantity": 1},
        headers=shop.customer.headers,
    )
    assert (await refused.json())["error"]["code"] == "subscription_product"

    resp = await shop.client.post(
        "/api/v1/subscriptions", json={"variant_id": variant_id}, headers=shop.customer.headers
    )
    sub = await resp.json()
    assert resp.status == 201, sub
    assert sub["status"] == "incomplete"
    assert sub["client_secret"].endswith("_secret_x")
    (customer,) = shop.stripe.seen("/v1/customers")
    assert customer.params["email"] == shop.customer.email
    (created,) = shop.stripe.seen("/v1/subscriptions")
    assert created.params["items"] == {"0": {"price": "price_maint_monthly"}}
    assert created.params["payment_behavior"] == "default_incomplete"
    assert (
        created.idempotency_key == f"subscribe:{shop.customer.user_id}:{variant_id}:0:subscription"
    )
    provider_id = next(iter(shop.stripe.subscriptions))

    status, answer = await shop.webhook(
        "customer.subscription.updated",
        {**shop.stripe.subscriptions[provider_id], "status": "active"},
    )
    assert answer["outcome"] == "subscription_active"
    status, answer = await shop.webhook(
        "invoice.payment_failed", {"id": "in_1", "object": "invoice", "subscription": provider_id}
    )
    assert status == 200, answer
    assert answer["outcome"] == "subscription_past_due"

    resp = await shop.client.post(
        f"/api/v1/subscriptions/{sub['id']}/cancel", headers=shop.customer.headers
    )
    cancelled = await resp.json()
    assert resp.status == 200, cancelled
    assert (cancelled["status"], cancelled["cancel_at_period_end"]) == ("past_due", True)
    assert shop.stripe.seen(f"/v1/subscriptions/{provider_id}")[0].params == {
        "cancel_at_period_end": "true"
    }
    async with open_database(settings.database_url):
        notes = await Notification.filter(
            user_id=shop.customer.user_id, type="subscription.payment_failed"
        ).count()
    assert notes == 1


async def test_upgrade_a_maintenance_contract(shop: Shop, settings: Settings) -> None:
    basic = await shop.product(
        sku="MC-B",
        kind="maintenance_contract",
        price=9_900,
        billing_interval="month",
        provider_price_id="price_basic",
    )
    premium = await shop.product(
        sku="MC-P",
        kind="maintenance_contract",
        price=19_900,
        billing_interval="month",
        provider_price_id="price_premium",
    )
    resp = await shop.client.post(
        "/api/v1/subscriptions",
        json={"variant_id": basic["variants"][0]["id"]},
        headers=shop.customer.headers,
    )
    sub = await resp.json()
    provider_id = next(iter(shop.stripe.subscriptions))
    item_id = shop.stripe.subscriptions[provider_id]["items"]["data"][0]["id"]

    resp = await shop.client.post(
        f"/api/v1/subscriptions/{sub['id']}/plan",
        json={"variant_id": premium["variants"][0]["id"]},
        headers=shop.customer.headers,
    )
    changed = await resp.json()

    assert resp.status == 200, changed
    assert changed["variant_id"] == premium["variants"][0]["id"]
    (update,) = shop.stripe.seen(f"/v1/subscriptions/{provider_id}")[1:]
    assert update.params["items"] == {"0": {"id": item_id, "price": "price_premium"}}
    assert update.params["proration_behavior"] == "create_prorations"
    assert update.idempotency_key is not None
    assert update.idempotency_key.startswith(f"change:{sub['id']}:")
    assert shop.stripe.subscriptions[provider_id]["items"]["data"][0]["price"] == {
        "id": "price_premium"
    }


async def test_sales_analytics(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="A-1", price=10_000, stock=10)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id)
    _, body = await shop.checkout()
    await shop.pay(body["payment_intent_id"])
    other = await sign_in(settings.database_url, shop.client.app[KEYS])
    await shop.add(variant_id, who=other)  # a cart that never became an order

    denied = await shop.client.get(
        "/api/v1/commerce/analytics/sales", headers=shop.customer.headers
    )
    assert denied.status == 403
    resp = await shop.client.get("/api/v1/commerce/analytics/sales", headers=shop.staff.headers)
    summary = await resp.json()

    assert resp.status == 200, summary
    assert (summary["paid_orders"], summary["carts"], summary["conversion_rate"]) == (1, 2, 0.5)
    assert summary["average_order_value"] == {"EUR": 12_490}
    assert summary["customer_lifetime_value"] == {"EUR": 12_490}
    (period,) = summary["periods"]
    assert (period["orders"], period["gross_amount"], period["net_amount"]) == (1, 12_490, 12_490)


async def test_provider_refusal_cancels_the_checkout(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="PR-1", stock=1)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id)
    shop.stripe.fail_next = 400

    status, body = await shop.checkout()

    assert (status, body["error"]["code"]) == (503, "payment_provider_error")
    async with open_database(settings.database_url):
        (order,) = await Order.all()
    assert order.status == OrderStatus.CANCELLED
    stock = await _stock(settings.database_url, variant_id)
    assert (stock.on_hand, stock.reserved) == (1, 0)


async def test_an_unrecorded_payment_intent_is_adopted(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="AD-1")
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    async with open_database(settings.database_url):
        await Payment.all().delete()  # as if the process stopped right after Stripe answered

    outcome = await shop.pay(body["payment_intent_id"])

    assert outcome["outcome"] == "paid"
    assert (await shop.order(body["order"]["id"]))["status"] == "paid"


async def test_expiry_cancels_the_payment_intent_at_stripe(
    shop: Shop, settings: Settings, stripe_fake: tuple[FakeStripe, str]
) -> None:
    product = await shop.product(sku="EX-1", stock=1)
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout()
    intent_id = body["payment_intent_id"]

    async with (
        open_database(settings.database_url),
        aiohttp.ClientSession() as session,
    ):
        gateway = StripeGateway(secret_key=SECRET_KEY, api_base=stripe_fake[1], session=session)
        later = utcnow() + timedelta(hours=1)
        assert await checkout.expire_checkouts(now=later, gateway=gateway) == 1
        payment = await Payment.get(provider_payment_id=intent_id)

    (cancel,) = shop.stripe.seen(f"/v1/payment_intents/{intent_id}/cancel")
    assert cancel.params == {"cancellation_reason": "abandoned"}
    assert cancel.idempotency_key == f"order:{body['order']['id']}:cancel:{intent_id}"
    assert shop.stripe.intents[intent_id]["status"] == "canceled"
    assert payment.status == PaymentStatus.CANCELLED
    status, answer = await shop.webhook("payment_intent.canceled", shop.stripe.intents[intent_id])
    assert (status, answer["outcome"]) == (200, "stale")


async def test_a_double_submitted_checkout_makes_one_order(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="DS-1", stock=5)
    await shop.add(product["variants"][0]["id"])

    results = await asyncio.gather(shop.checkout(), shop.checkout())

    assert sorted(status for status, _ in results) == [201, 409]
    assert {body["error"]["code"] for status, body in results if status == 409} == {"cart_empty"}
    async with open_database(settings.database_url):
        assert await Order.all().count() == 1
        assert (await Stock.get(variant_id=UUID(product["variants"][0]["id"]))).reserved == 1


async def test_bulk_price_tiers_in_cart_and_order(shop: Shop, settings: Settings) -> None:
    product = await shop.product(
        sku="BULK-1",
        price=1_000,
        stock=100,
        price_tiers=[{"min_quantity": 10, "price_amount": 900}],
    )
    assert product["variants"][0]["price_tiers"] == [{"min_quantity": 10, "price_amount": 900}]
    await shop.add(product["variants"][0]["id"], 10)

    status, body = await shop.checkout(country="US", region="TX")

    assert status == 201, body
    line = body["order"]["lines"][0]
    assert (line["unit_price_amount"], line["net_amount"], line["tax_amount"]) == (900, 9_000, 563)


async def test_an_older_subscription_event_arriving_late_is_stale(
    shop: Shop, settings: Settings
) -> None:
    product = await shop.product(
        sku="MC-S",
        kind="maintenance_contract",
        price=9_900,
        billing_interval="month",
        provider_price_id="price_s",
    )
    resp = await shop.client.post(
        "/api/v1/subscriptions",
        json={"variant_id": product["variants"][0]["id"]},
        headers=shop.customer.headers,
    )
    sub = await resp.json()
    provider_id = next(iter(shop.stripe.subscriptions))
    snapshot = shop.stripe.subscriptions[provider_id]
    now = int(time.time())

    _, newer = await shop.webhook(
        "customer.subscription.updated", {**snapshot, "status": "active"}, created=now
    )
    _, older = await shop.webhook(
        "customer.subscription.updated", {**snapshot, "status": "incomplete"}, created=now - 60
    )

    assert (newer["outcome"], older["outcome"]) == ("subscription_active", "stale")
    resp = await shop.client.get("/api/v1/subscriptions", headers=shop.customer.headers)
    (listed,) = (await resp.json())["items"]
    assert (listed["id"], listed["status"]) == (sub["id"], "active")


async def test_a_refund_event_before_its_payment_is_retried_later(
    shop: Shop, settings: Settings
) -> None:
    product = await shop.product(sku="OOO-1", price=10_000)
    await shop.add(product["variants"][0]["id"])
    _, body = await shop.checkout(country="CH")
    intent_id = body["payment_intent_id"]
    early = {**shop.stripe.charge(intent_id), "amount_refunded": 4_000}

    status, refused = await shop.webhook("charge.refunded", early, event_id="evt_refund")
    assert (status, refused["error"]["code"]) == (503, "event_out_of_order")
    async with open_database(settings.database_url):
        assert await WebhookEvent.all().count() == 0

    await shop.pay(intent_id)
    status, redelivered = await shop.webhook("charge.refunded", early, event_id="evt_refund")

    assert (status, redelivered["outcome"]) == (200, "refund_booked")
    order = await shop.order(body["order"]["id"])
    assert (order["status"], order["refunded_amount"]) == ("partially_refunded", 4_000)
