"""The commerce cleanup context: the Stripe client's session and the checkout-expiry task."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.commerce.service import Commerce
from api.keys import COMMERCE, SETTINGS


async def commerce_ctx(app: web.Application) -> AsyncIterator[None]:
    commerce = Commerce(app[SETTINGS])
    await commerce.start()
    app[COMMERCE] = commerce
    try:
        yield
    finally:
        await commerce.close()
