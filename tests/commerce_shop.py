"""Test helpers for commerce: a shop driven over the REST API, the fake Stripe beside it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import BUS, KEYS, SETTINGS
from core.bus import Event
from core.permissions import Role
from tests.fakes.stripe_server import FakeStripe, event, sign
from tests.identity import SignedIn, sign_in


@dataclass
class Shop:
    client: TestClient[Any, Any]
    stripe: FakeStripe
    staff: SignedIn
    admin: SignedIn
    customer: SignedIn
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    async def listen(self, *patterns: str) -> None:
        async def keep(e: Event) -> None:
            await self.events.put(e)

        for pattern in patterns:
            await self.client.app[BUS].subscribe(pattern, keep)

    async def next_event(self, event_type: str, timeout: float = 5.0) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                got = await self.events.get()
                if got.type == event_type:
                    return got

    async def product(
        self,
        *,
        sku: str = "BRKT-1",
        price: int = 10_000,
        stock: int = 5,
        kind: str = "physical",
        tax_category: str = "standard",
        currency: str = "EUR",
        **variant: Any,
    ) -> dict[str, Any]:
        body = {
            "slug": sku.lower(),
            "name": f"Product {sku}",
            "kind": kind,
            "tax_category": tax_category,
            "variants": [
                {"sku": sku, "price_amount": price, "currency": currency, "stock": stock, **variant}
            ],
        }
        resp = await self.client.post("/api/v1/products", json=body, headers=self.staff.headers)
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def add(self, variant_id: str, quantity: int = 1, who: SignedIn | None = None) -> None:
        resp = await self.client.put(
            "/api/v1/cart/lines",
            json={"variant_id": variant_id, "quantity": quantity},
            headers=(who or self.customer).headers,
        )
        assert resp.status == 200, await resp.text()

    async def checkout(
        self, who: SignedIn | None = None, **body: Any
    ) -> tuple[int, dict[str, Any]]:
        body.setdefault("country", "DE")
        resp = await self.client.post(
            "/api/v1/checkout", json=body, headers=(who or self.customer).headers
        )
        return resp.status, await resp.json()

    async def webhook(
        self,
        event_type: str,
        obj: dict[str, Any],
        *,
        event_id: str | None = None,
        created: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        payload = event(event_type, obj, event_id=event_id, created=created)
        return await self.post_webhook(payload, sign(payload))

    async def post_webhook(self, payload: bytes, signature: str) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post(
            "/api/v1/webhooks/stripe",
            data=payload,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        return resp.status, await resp.json()

    async def pay(self, intent_id: str) -> dict[str, Any]:
        status, body = await self.webhook(
            "payment_intent.succeeded", self.stripe.intent_succeeded(intent_id)
        )
        assert status == 200, body
        return body

    async def order(self, order_id: str, who: SignedIn | None = None) -> dict[str, Any]:
        resp = await self.client.get(
            f"/api/v1/orders/{order_id}", headers=(who or self.customer).headers
        )
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def open_shop(client: TestClient[Any, Any], stripe: FakeStripe, *listen: str) -> Shop:
    """A shop with a staff member, an admin and a customer, recording the bus `listen` events."""
    keys = client.app[KEYS]
    url = client.app[SETTINGS].database_url
    shop = Shop(
        client=client,
        stripe=stripe,
        staff=await sign_in(url, keys, role=Role.EDITOR),
        admin=await sign_in(url, keys, role=Role.ADMIN),
        customer=await sign_in(url, keys),
    )
    await shop.listen(*listen)
    return shop
