"""PayPal as the second way to pay: Orders v2 over aiohttp against a PayPal-shaped server on
loopback, webhooks verified through its verification API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient

from api.commerce import ledger
from api.keys import KEYS
from core.permissions import Role
from core.settings import Settings
from db.connection import open_database
from db.models.commerce import LedgerTransaction, Order, OrderStatus, Stock, WebhookEvent
from tests.commerce_shop import Shop
from tests.conftest import SettingsFactory
from tests.fakes.paypal_server import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, FakePayPal, sign_event
from tests.fakes.stripe_server import FakeStripe
from tests.identity import sign_in


@pytest.fixture
async def paypal_fake(aiohttp_server: Any) -> tuple[FakePayPal, str]:
    fake = FakePayPal()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
def settings(
    make_settings: SettingsFactory, migrated_database_url: str, paypal_fake: tuple[FakePayPal, str]
) -> Settings:
    return make_settings(
        database_url=migrated_database_url,
        paypal_client_id=CLIENT_ID,
        paypal_client_secret=CLIENT_SECRET,
        paypal_webhook_id=WEBHOOK_ID,
        paypal_api_base=paypal_fake[1],
    )


@pytest.fixture
async def shop(client: TestClient[Any, Any], settings: Settings) -> Shop:
    keys = client.app[KEYS]
    url = settings.database_url
    shop = Shop(
        client=client,
        stripe=FakeStripe(),  # not configured here: PayPal only
        staff=await sign_in(url, keys, role=Role.EDITOR),
        admin=await sign_in(url, keys, role=Role.ADMIN),
        customer=await sign_in(url, keys),
    )
    await shop.listen("order.*")
    return shop


async def _post_event(
    shop: Shop, event: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    resp = await shop.client.post(
        "/api/v1/webhooks/paypal",
        data=json.dumps(event).encode(),
        headers={
            **(headers if headers is not None else sign_event(event)),
            "Content-Type": "application/json",
        },
    )
    return resp.status, await resp.json()


async def _bought(shop: Shop) -> tuple[dict[str, Any], str]:
    product = await shop.product(sku="PP-1", price=10_000, stock=3)
    await shop.add(product["variants"][0]["id"])
    status, body = await shop.checkout(country="DE", payment_method="paypal")
    assert status == 201, body
    return body, product["variants"][0]["id"]


async def test_pay_with_paypal_end_to_end(
    shop: Shop, settings: Settings, paypal_fake: tuple[FakePayPal, str]
) -> None:
    paypal, _ = paypal_fake
    body, variant_id = await _bought(shop)
    order_id = body["order"]["id"]

    # the PayPal order carries the server's total as a decimal string, keyed by our order
    assert body["provider"] == "paypal"
    assert body["client_secret"] is None
    assert (
        body["approve_url"] == f"https://www.paypal.com/checkoutnow?token={body['paypal_order_id']}"
    )
    (created,) = paypal.seen("/v2/checkout/orders")
    assert created.request_id == f"order:{order_id}:paypal_order"
    assert created.body["purchase_units"][0]["amount"] == {
        "currency_code": "EUR",
        "value": "124.90",
    }
    assert created.body["purchase_units"][0]["custom_id"] == order_id

    # the buyer approved; the capture alone does not make the order paid
    resp = await shop.client.post(
        f"/api/v1/orders/{order_id}/paypal/capture", headers=shop.customer.headers
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "pending"

    # the verified webhook does
    event = paypal.capture_event(body["paypal_order_id"])
    status, answer = await _post_event(shop, event)
    assert (status, answer["outcome"], answer["duplicate"]) == (200, "paid", False)
    assert (await shop.order(order_id))["status"] == "paid"
    paid = await shop.next_event("order.paid")
    assert paid.data["order_id"] == order_id

    # replayed: processed once
    status, again = await _post_event(shop, event)
    assert (status, again["duplicate"]) == (200, True)
    async with open_database(settings.database_url):
        stock = await Stock.get(variant_id=UUID(variant_id))
        assert await LedgerTransaction.all().count() == 1
    assert (stock.on_hand, stock.reserved) == (2, 0)
    assert paypal.tokens_issued == 1  # the token is cached


async def test_unverified_paypal_event_is_refused(
    shop: Shop, settings: Settings, paypal_fake: tuple[FakePayPal, str]
) -> None:
    paypal, _ = paypal_fake
    body, _ = await _bought(shop)
    await shop.client.post(
        f"/api/v1/orders/{body['order']['id']}/paypal/capture", headers=shop.customer.headers
    )
    event = paypal.capture_event(body["paypal_order_id"])
    headers = sign_event(event)
    event["resource"]["amount"]["value"] = "1.00"

    status, answer = await _post_event(shop, event, headers)
    assert (status, answer["error"]["code"]) == (400, "invalid_signature")
    status, answer = await _post_event(shop, paypal.capture_event(body["paypal_order_id"]), {})
    assert (status, answer["error"]["code"]) == (400, "invalid_signature")

    async with open_database(settings.database_url):
        assert await WebhookEvent.all().count() == 0
        assert (await Order.get(id=UUID(body["order"]["id"]))).status == OrderStatus.PENDING


async def test_paypal_refunds(
    shop: Shop, settings: Settings, paypal_fake: tuple[FakePayPal, str]
) -> None:
    paypal, _ = paypal_fake
    body, _ = await _bought(shop)
    order_id = body["order"]["id"]
    await shop.client.post(
        f"/api/v1/orders/{order_id}/paypal/capture", headers=shop.customer.headers
    )
    event = paypal.capture_event(body["paypal_order_id"])
    capture_id = event["resource"]["id"]
    await _post_event(shop, event)

    resp = await shop.client.post(
        f"/api/v1/orders/{order_id}/refunds", json={"amount": 2_000}, headers=shop.admin.headers
    )
    refund = await resp.json()
    assert resp.status == 201, refund
    assert refund["order_status"] == "partially_refunded"
    (seen,) = paypal.seen(f"/v2/payments/captures/{capture_id}/refund")
    assert seen.body == {"amount": {"currency_code": "EUR", "value": "20.00"}}
    assert seen.request_id == f"refund:{refund['id']}"

    # PayPal's refund events carry the running total: known, then 10.00 more made at PayPal
    status, known = await _post_event(shop, paypal.refund_event(capture_id, "20.00", "EUR"))
    assert (status, known["outcome"]) == (200, "already_known")
    status, more = await _post_event(shop, paypal.refund_event(capture_id, "30.00", "EUR"))
    assert (status, more["outcome"]) == (200, "refund_booked")
    order = await shop.order(order_id)
    assert (order["status"], order["refunded_amount"]) == ("partially_refunded", 3_000)
    async with open_database(settings.database_url):
        books = await ledger.balances(order_id=UUID(order_id))
    assert books[ledger.PAYPAL_CASH].net_debit == 12_490 - 3_000
    assert ledger.CASH not in books


async def test_stripe_unconfigured_means_no_card_checkout(shop: Shop, settings: Settings) -> None:
    product = await shop.product(sku="NC-1")
    await shop.add(product["variants"][0]["id"])

    status, body = await shop.checkout()

    assert (status, body["error"]["code"]) == (503, "payments_unavailable")
    async with open_database(settings.database_url):
        assert await Order.all().count() == 0
