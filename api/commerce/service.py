"""What the commerce routes share: the Stripe gateway (over one aiohttp session), the tax
rules, the checkout hold, and the task that cancels expired checkouts. Opened and closed by
the app's cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import aiohttp
from tortoise.exceptions import OperationalError

from api.commerce.checkout import expire_checkouts
from api.commerce.payments_paypal import PayPalGateway
from api.commerce.payments_stripe import StripeGateway
from api.commerce.tax import TaxRules
from api.commerce.vies import ViesClient
from core.clock import utcnow
from core.logs import get_logger
from core.settings import Settings

log = get_logger(__name__)

SWEEP_SECONDS = 30.0


class Commerce:
    def __init__(self, settings: Settings) -> None:
        self.rules = TaxRules(seller_country=settings.commerce_seller_country)
        self.reservation = timedelta(minutes=settings.commerce_reservation_minutes)
        self.public_url = settings.public_url  # Checkout Sessions return here
        secret = settings.stripe_webhook_secret
        self.webhook_secret = secret.get_secret_value() if secret is not None else None
        self._secret_key = settings.stripe_secret_key
        self._api_base = settings.stripe_api_base
        self._paypal_credentials = (
            (settings.paypal_client_id, settings.paypal_client_secret.get_secret_value())
            if settings.paypal_client_id and settings.paypal_client_secret
            else None
        )
        self._paypal_base = settings.paypal_api_base
        self.paypal_webhook_id = settings.paypal_webhook_id
        self._vies_base = settings.vies_api_base
        self._session: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.gateway: StripeGateway | None = None
        self.paypal: PayPalGateway | None = None
        self.vies: ViesClient | None = None

    async def start(self) -> None:
        if self._secret_key is not None or self._paypal_credentials is not None:
            self._session = aiohttp.ClientSession()
        if self._vies_base is not None and self._session is not None:
            self.vies = ViesClient(api_base=self._vies_base, session=self._session)
        if self._secret_key is not None and self._session is not None:
            self.gateway = StripeGateway(
                secret_key=self._secret_key.get_secret_value(),
                api_base=self._api_base,
                session=self._session,
            )
        if self._paypal_credentials is not None and self._session is not None:
            client_id, secret = self._paypal_credentials
            self.paypal = PayPalGateway(
                client_id=client_id,
                secret=secret,
                api_base=self._paypal_base,
                session=self._session,
            )
        self._sweeper = asyncio.create_task(self._sweep(), name="commerce-expiry")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._session is not None:
            await self._session.close()

    async def _sweep(self) -> None:
        """Cancel unpaid checkouts past their hold, giving their stock and coupons back."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                cancelled = await expire_checkouts(now=utcnow(), gateway=self.gateway)
            except (OSError, OperationalError) as exc:  # database away: try again next round
                log.warning("checkout_sweep_failed", error=str(exc))
                continue
            if cancelled:
                log.info("checkouts_expired", count=cancelled)
