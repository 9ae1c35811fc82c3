"""The last unit, two checkouts at once, on the real PostgreSQL: exactly one gets it.

The services run in this process against one database with a pool of connections, so the
two checkouts are two transactions racing for the same stock row, as on two hub nodes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from api.commerce import cart, catalog, checkout
from api.commerce.inventory import OutOfStock
from api.commerce.payments_stripe import StripeGateway
from api.commerce.tax import Destination, TaxRules
from core.bus.memory import MemoryBus
from core.clock import utcnow
from core.permissions import Role
from db.connection import open_database
from db.models.commerce import Order, OrderStatus, ProductKind, Stock, StockReservation, TaxCategory
from db.models.identity import User
from tests.fakes.stripe_server import SECRET_KEY, FakeStripe


@pytest.fixture
async def stripe_base(aiohttp_server: Any) -> tuple[FakeStripe, str]:
    fake = FakeStripe()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


@pytest.mark.databases("postgres")
@pytest.mark.parametrize("round_", range(5))
async def test_two_checkouts_for_the_last_unit_one_wins(
    database_kind: str,
    migrated_database_url: str,
    stripe_base: tuple[FakeStripe, str],
    round_: int,
) -> None:
    fake, base = stripe_base
    bus = MemoryBus()
    await bus.start()
    async with open_database(migrated_database_url), aiohttp.ClientSession() as session:
        gateway = StripeGateway(secret_key=SECRET_KEY, api_base=base, session=session)
        product = await catalog.create_product(
            slug="last",
            name="The last bracket",
            kind=ProductKind.PHYSICAL,
            tax_category=TaxCategory.STANDARD,
            variants=[
                catalog.VariantSpec(sku="LAST-1", price_amount=5_000, currency="EUR", stock=1)
            ],
        )
        view = await catalog.product_view(product, now=utcnow())
        variant_id = view.variants[0].id
        buyers = [
            await User.create(email=f"buyer{i}-{round_}@example.com", role=Role.CUSTOMER)
            for i in range(2)
        ]
        for buyer in buyers:
            await cart.set_line(user_id=buyer.id, variant_id=variant_id, quantity=1, now=utcnow())

        async def buy(user_id: UUID) -> object:
            return await checkout.checkout(
                user_id=user_id,
                destination=Destination(country="DE"),
                coupon_code=None,
                gateway=gateway,
                bus=bus,
                rules=TaxRules(),
                now=utcnow(),
                reservation=timedelta(minutes=30),
            )

        results = await asyncio.gather(*(buy(b.id) for b in buyers), return_exceptions=True)

        winners = [r for r in results if isinstance(r, checkout.CheckoutResult)]
        losers = [r for r in results if isinstance(r, OutOfStock)]
        assert (len(winners), len(losers)) == (1, 1), results
        assert losers[0].code == "out_of_stock"
        stock = await Stock.get(variant_id=variant_id)
        assert (stock.on_hand, stock.reserved) == (1, 1)
        assert await StockReservation.all().count() == 1
        assert await Order.filter(status=OrderStatus.PENDING).count() == 1
        assert len(fake.seen("/v1/payment_intents")) == 1
    await bus.close()
