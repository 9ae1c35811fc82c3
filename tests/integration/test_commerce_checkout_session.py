"""Stripe Checkout Sessions (the hosted page) end to end over the REST API, on SQLite and
PostgreSQL: the real `stripe` library against the Stripe-shaped server on loopback, webhooks
signed as Stripe signs them."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from api.commerce import checkout, ledger
from api.commerce.payments_stripe import StripeGateway
from core.clock import utcnow
from core.settings import Settings
from db.connection import open_database
from db.models.commerce import (
    LedgerEntry,
    LedgerTransaction,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Stock,
    WebhookEvent,
)
from tests.commerce_shop import Shop, open_shop
from tests.conftest import SettingsFactory
from tests.fakes.stripe_server import SECRET_KEY, WEBHOOK_SECRET, FakeStripe

PUBLIC_URL = "https://hub.example.test"


@pytest.fixture
async def stripe_fake(aiohttp_server: Any) -> tuple[FakeStripe, str]:
    fake = FakeStripe(return_origin=PUBLIC_URL)
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
def settings(
    make_settings: SettingsFactory, migrated_database_url: str, stripe_fake: tuple[FakeStripe, str]
) -> Settings:
    return make_settings(
        database_url=migrated_database_url,
        public_url=PUBLIC_URL,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_fake[1],
    )


@pytest.fixture
async def shop(client: TestClient[Any, Any], stripe_fake: tuple[FakeStripe, str]) -> Shop:
    return await open_shop(client, stripe_fake[0], "order.*", "inventory.*")


async def _stock(url: str, variant_id: str) -> tuple[int, int]:
    async with open_database(url):
        stock = await Stock.get(variant_id=UUID(variant_id))
    return stock.on_hand, stock.reserved


async def _session_checkout(
    shop: Shop, *, sku: str, price: int = 10_000, stock: int = 5, quantity: int = 1, **body: Any
) -> tuple[str, dict[str, Any]]:
    product = await shop.product(sku=sku, price=price, stock=stock)
    variant_id: str = product["variants"][0]["id"]
    await shop.add(variant_id, quantity)
    status, answer = await shop.checkout(payment_method="stripe_checkout", **body)
    assert status == 201, answer
    return variant_id, answer


async def test_pay_through_a_checkout_session_then_refund(shop: Shop, settings: Settings) -> None:
    # given two units in the cart, checked out from Germany through Stripe's hosted page,
    # coming back to a page of ours named by path
    started = int(time.time())
    variant_id, body = await _session_checkout(
        shop, sku="CS-1", quantity=2, success_url="/shop/thanks?from=stripe"
    )

    # then the order is priced by the server and Stripe got one line for exactly its total
    order = body["order"]
    order_id = order["id"]
    assert order["total_amount"] == 24_390  # 2 x 100.00 + 5.90 shipping + 19 % VAT on goods
    assert (body["provider"], body["payment_intent_id"], body["client_secret"]) == (
        "stripe_checkout",
        None,
        None,
    )
    (seen,) = shop.stripe.seen("/v1/checkout/sessions")
    session_id = body["checkout_session_id"]
    assert body["checkout_url"] == f"https://checkout.stripe.com/c/pay/{session_id}"
    assert seen.idempotency_key == f"order:{order_id}:checkout_session"
    expires_at = int(seen.params.pop("expires_at"))
    assert seen.params == {
        "mode": "payment",
        "line_items": {
            "0": {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": "24390",
                    "product_data": {"name": f"Order {order_id.replace('-', '')[:8]}"},
                },
                "quantity": "1",
            }
        },
        "client_reference_id": order_id,
        "metadata": {"order_id": order_id, "user_id": str(shop.customer.user_id)},
        "payment_intent_data": {
            "metadata": {"order_id": order_id, "user_id": str(shop.customer.user_id)}
        },
        "success_url": f"{PUBLIC_URL}/shop/thanks?from=stripe",
        "cancel_url": f"{PUBLIC_URL}/orders/{order_id}?checkout=cancelled",
    }
    # the reservation is 30 min: the session lives as long, clamped up into Stripe's window
    assert started + 1800 <= expires_at <= int(time.time()) + 1800 + 61
    assert await _stock(settings.database_url, variant_id) == (5, 2)
    async with open_database(settings.database_url):
        payment = await Payment.get(order_id=UUID(order_id))
    assert (payment.provider, payment.provider_payment_id, payment.provider_charge_id) == (
        "stripe_checkout",
        session_id,
        session_id,
    )

    # when the buyer pays on the hosted page and Stripe says so
    completed = shop.stripe.complete_session(session_id)
    intent_id = completed["payment_intent"]
    status, answer = await shop.webhook("checkout.session.completed", completed)

    # then the order is paid, the stock gone, the ledger balanced, the bus told
    assert (status, answer["outcome"]) == (200, "paid")
    assert (await shop.order(order_id))["status"] == "paid"
    assert await _stock(settings.database_url, variant_id) == (3, 0)
    paid_event = await shop.next_event("order.paid")
    assert (paid_event.data["order_id"], paid_event.data["total_amount"]) == (order_id, 24_390)
    async with open_database(settings.database_url):
        payment = await Payment.get(order_id=UUID(order_id))
        entries = await LedgerEntry.all()
        books = await ledger.balances(order_id=UUID(order_id))
    assert (payment.status, payment.provider_payment_id, payment.provider_charge_id) == (
        PaymentStatus.SUCCEEDED,
        intent_id,
        session_id,
    )
    assert sum(e.debit for e in entries) == sum(e.credit for e in entries) == 24_390
    assert books[ledger.CASH].net_debit == 24_390
    assert books[ledger.SALES].credit == 20_000
    assert books[ledger.SHIPPING].credit == 590
    assert books[ledger.TAX].credit == 3_800

    # when Stripe's payment_intent.succeeded for the same money arrives too
    status, answer = await shop.webhook(
        "payment_intent.succeeded", shop.stripe.intent_succeeded(intent_id)
    )

    # then it finds the order paid: nothing settles twice
    assert (status, answer["outcome"]) == (200, "already_paid")
    assert await _stock(settings.database_url, variant_id) == (3, 0)

    # when staff refund part of it
    resp = await shop.client.post(
        f"/api/v1/orders/{order_id}/refunds", json={"amount": 2_000}, headers=shop.admin.headers
    )
    refund = await resp.json()

    # then the refund goes to the session's PaymentIntent and lands in order and ledger
    assert resp.status == 201, refund
    assert (refund["status"], refund["order_status"]) == ("succeeded", "partially_refunded")
    (seen_refund,) = shop.stripe.seen("/v1/refunds")
    assert seen_refund.params["payment_intent"] == intent_id
    assert seen_refund.params["amount"] == "2000"
    status, answer = await shop.webhook("charge.refunded", shop.stripe.charge(intent_id))
    assert (status, answer["outcome"]) == (200, "already_known")
    async with open_database(settings.database_url):
        books = await ledger.balances(order_id=UUID(order_id))
        assert await LedgerTransaction.all().count() == 2
    assert books[ledger.CASH].net_debit == 22_390
    assert books[ledger.REFUNDS].debit + books[ledger.TAX].debit == 2_000


async def test_payment_intent_first_then_session_completed_settles_once(
    shop: Shop, settings: Settings
) -> None:
    # given a session the buyer paid, whose payment_intent.succeeded Stripe delivers first
    variant_id, body = await _session_checkout(shop, sku="CS-2")
    completed = shop.stripe.complete_session(body["checkout_session_id"])
    intent_id = completed["payment_intent"]

    first = await shop.webhook("payment_intent.succeeded", shop.stripe.intent_succeeded(intent_id))
    second = await shop.webhook("checkout.session.completed", completed)

    # then the first pays the order through the session's own Payment, the second finds it paid
    assert (first[0], first[1]["outcome"]) == (200, "paid")
    assert (second[0], second[1]["outcome"]) == (200, "already_paid")
    async with open_database(settings.database_url):
        (payment,) = await Payment.all()
        assert await LedgerTransaction.all().count() == 1
    assert (payment.provider, payment.provider_payment_id, payment.provider_charge_id) == (
        "stripe_checkout",
        intent_id,
        body["checkout_session_id"],
    )
    assert payment.status == PaymentStatus.SUCCEEDED
    assert await _stock(settings.database_url, variant_id) == (4, 0)


async def test_session_amount_other_than_the_order_does_not_pay(
    shop: Shop, settings: Settings
) -> None:
    _, body = await _session_checkout(shop, sku="CS-3")
    completed = shop.stripe.complete_session(body["checkout_session_id"])

    status, answer = await shop.webhook(
        "checkout.session.completed", {**completed, "amount_total": 100}
    )

    assert (status, answer["outcome"]) == (200, "amount_mismatch")
    assert (await shop.order(body["order"]["id"]))["status"] == "pending"


async def test_expired_session_cancels_the_order_and_releases_stock(
    shop: Shop, settings: Settings
) -> None:
    # given an open session holding the last unit
    variant_id, body = await _session_checkout(shop, sku="CS-4", stock=1)
    assert await _stock(settings.database_url, variant_id) == (1, 1)
    session = shop.stripe.sessions[body["checkout_session_id"]]
    session["status"] = "expired"

    # when Stripe says it expired
    status, answer = await shop.webhook(
        "checkout.session.expired", shop.stripe.session_object(session["id"])
    )

    # then the order is cancelled and the unit is back
    assert (status, answer["outcome"]) == (200, "cancelled")
    assert (await shop.order(body["order"]["id"]))["status"] == "cancelled"
    assert await _stock(settings.database_url, variant_id) == (1, 0)
    async with open_database(settings.database_url):
        payment = await Payment.get(order_id=UUID(body["order"]["id"]))
    assert payment.status == PaymentStatus.CANCELLED


async def test_our_expiry_expires_the_session_at_stripe(
    shop: Shop, settings: Settings, stripe_fake: tuple[FakeStripe, str]
) -> None:
    variant_id, body = await _session_checkout(shop, sku="CS-5", stock=1)
    session_id = body["checkout_session_id"]

    async with (
        open_database(settings.database_url),
        aiohttp.ClientSession() as http,
    ):
        gateway = StripeGateway(secret_key=SECRET_KEY, api_base=stripe_fake[1], session=http)
        assert await checkout.expire_checkouts(now=utcnow(), gateway=gateway) == 0
        later = utcnow() + timedelta(hours=1)
        assert await checkout.expire_checkouts(now=later, gateway=gateway) == 1
        payment = await Payment.get(provider_charge_id=session_id)

    (expire,) = shop.stripe.seen(f"/v1/checkout/sessions/{session_id}/expire")
    assert expire.params == {}
    assert expire.idempotency_key == f"order:{body['order']['id']}:expire:{session_id}"
    assert shop.stripe.sessions[session_id]["status"] == "expired"
    assert payment.status == PaymentStatus.CANCELLED
    assert (await shop.order(body["order"]["id"]))["status"] == "cancelled"
    assert await _stock(settings.database_url, variant_id) == (1, 0)
    # Stripe's checkout.session.expired that follows changes nothing
    status, answer = await shop.webhook(
        "checkout.session.expired", shop.stripe.session_object(session_id)
    )
    assert (status, answer["outcome"]) == (200, "stale")


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("success_url", "https://evil.example/thanks"),
        ("success_url", "//evil.example/thanks"),
        ("cancel_url", "http://hub.example.test/orders"),  # our host, another scheme
        ("success_url", "https://hub.example.test@evil.example/"),
        ("success_url", "javascript:alert(1)"),
        ("success_url", "/\\evil.example"),
    ],
)
async def test_a_return_url_off_our_origin_is_refused(
    shop: Shop, settings: Settings, field: str, url: str
) -> None:
    product = await shop.product(sku="CS-6", stock=1)
    variant_id = product["variants"][0]["id"]
    await shop.add(variant_id)

    urls: dict[str, Any] = {field: url}
    status, body = await shop.checkout(payment_method="stripe_checkout", **urls)

    assert (status, body["error"]["code"]) == (422, "return_url_not_allowed")
    assert body["error"]["details"] == {"field": field}
    assert shop.stripe.requests == []
    assert await _stock(settings.database_url, variant_id) == (1, 0)
    async with open_database(settings.database_url):
        assert await Order.all().count() == 0
        assert await Payment.all().count() == 0


async def test_return_urls_belong_to_checkout_sessions_only(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="CS-7")
    await shop.add(product["variants"][0]["id"])

    status, body = await shop.checkout(success_url="/shop/thanks")

    assert (status, body["error"]["code"]) == (422, "return_url_not_allowed")
    assert shop.stripe.requests == []
    async with open_database(settings.database_url):
        assert await Order.all().count() == 0


async def test_a_full_url_on_our_origin_is_taken(shop: Shop, settings: Settings) -> None:
    _, body = await _session_checkout(shop, sku="CS-8", cancel_url=f"{PUBLIC_URL}/cart?back=1#top")

    (seen,) = shop.stripe.seen("/v1/checkout/sessions")
    assert seen.params["cancel_url"] == f"{PUBLIC_URL}/cart?back=1"
    order_id = body["order"]["id"]
    assert seen.params["success_url"] == (
        f"{PUBLIC_URL}/orders/{order_id}?checkout=success&session_id={{CHECKOUT_SESSION_ID}}"
    )


async def test_async_payment_failed_cancels_the_order(shop: Shop, settings: Settings) -> None:
    # given a session completed with a delayed method (e.g. SEPA debit): not paid yet
    variant_id, body = await _session_checkout(shop, sku="CS-9", stock=2)
    completed = shop.stripe.complete_session(body["checkout_session_id"], paid=False)
    status, answer = await shop.webhook("checkout.session.completed", completed)
    assert (status, answer["outcome"]) == (200, "awaiting_payment")
    assert (await shop.order(body["order"]["id"]))["status"] == "pending"
    assert await _stock(settings.database_url, variant_id) == (2, 1)

    # when the debit fails
    status, answer = await shop.webhook("checkout.session.async_payment_failed", completed)

    # then the order is cancelled, its unit released, nothing booked
    assert (status, answer["outcome"]) == (200, "cancelled")
    assert (await shop.order(body["order"]["id"]))["status"] == "cancelled"
    assert await _stock(settings.database_url, variant_id) == (2, 0)
    async with open_database(settings.database_url):
        payment = await Payment.get(order_id=UUID(body["order"]["id"]))
        assert await LedgerTransaction.all().count() == 0
    assert (payment.status, payment.provider_payment_id) == (
        PaymentStatus.FAILED,
        completed["payment_intent"],
    )


async def test_async_payment_succeeded_pays_the_order(shop: Shop, settings: Settings) -> None:
    variant_id, body = await _session_checkout(shop, sku="CS-10", stock=2)
    completed = shop.stripe.complete_session(body["checkout_session_id"], paid=False)
    await shop.webhook("checkout.session.completed", completed)

    status, answer = await shop.webhook(
        "checkout.session.async_payment_succeeded", {**completed, "payment_status": "paid"}
    )

    assert (status, answer["outcome"]) == (200, "paid")
    assert (await shop.order(body["order"]["id"]))["status"] == "paid"
    assert await _stock(settings.database_url, variant_id) == (1, 0)
    async with open_database(settings.database_url):
        kinds = [row.type for row in await WebhookEvent.all().order_by("received_at")]
        order = await Order.get(id=UUID(body["order"]["id"]))
    assert kinds == ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
    assert order.status == OrderStatus.PAID
