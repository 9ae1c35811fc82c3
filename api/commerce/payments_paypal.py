"""PayPal, the second way to pay: Orders v2 over aiohttp (create, capture), refunds of a
capture, and webhook verification through PayPal's own verification API.

Every POST carries `PayPal-Request-Id` (PayPal's idempotency key). The OAuth access token
(client credentials) is cached until shortly before it expires. `PAYPAL_API_BASE` points the
client elsewhere (the tests' PayPal-shaped server on loopback).
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.errors import ServiceUnavailable
from core.logs import get_logger

log = get_logger(__name__)

PROVIDER = "paypal"
ZERO_DECIMAL = frozenset({"JPY", "HUF", "TWD"})
TIMEOUT = aiohttp.ClientTimeout(total=30)


class PayPalError(ServiceUnavailable):
    default_code = "payment_provider_error"
    default_message = "The payment provider did not accept the request"


def to_decimal(amount: int, currency: str) -> str:
    """Minor units as PayPal's decimal string: 12390 EUR -> "123.90"."""
    if currency in ZERO_DECIMAL:
        return str(amount)
    return f"{amount // 100}.{amount % 100:02d}"


def to_minor(value: str, currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return int(value)
    whole, _, cents = value.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])


@dataclass(frozen=True, slots=True)
class PayPalOrder:
    id: str
    status: str
    approve_url: str | None
    capture_id: str | None = None


@dataclass(frozen=True, slots=True)
class PayPalRefund:
    id: str
    status: str  # COMPLETED, PENDING, FAILED, CANCELLED


class PayPalGateway:
    def __init__(
        self, *, client_id: str, secret: str, api_base: str, session: aiohttp.ClientSession
    ) -> None:
        token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self._basic = f"Basic {token}"
        self._base = api_base.rstrip("/")
        self._session = session
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    async def _access_token(self) -> str:
        async with self._token_lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
            try:
                async with self._session.post(
                    f"{self._base}/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": self._basic},
                    timeout=TIMEOUT,
                ) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise self._error(resp.status, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(None, {"name": type(exc).__name__}) from None
            token = str(body["access_token"])
            self._token = (token, time.monotonic() + float(body.get("expires_in", 300)) - 60)
            return token

    async def _post(
        self, path: str, payload: dict[str, Any], *, request_id: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {await self._access_token()}"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id
            headers["Prefer"] = "return=representation"
        try:
            async with self._session.post(
                f"{self._base}{path}", json=payload, headers=headers, timeout=TIMEOUT
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status >= 300:
                    raise self._error(resp.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._error(None, {"name": type(exc).__name__}) from None
        if not isinstance(body, dict):
            raise self._error(resp.status, {"name": "MALFORMED_RESPONSE"})
        return body

    async def create_order(
        self, *, amount: int, currency: str, order_id: str, request_id: str
    ) -> PayPalOrder:
        body = await self._post(
            "/v2/checkout/orders",
            {
                "intent": "CAPTURE",
                "purchase_units": [
                    {
                        "reference_id": order_id,
                        "custom_id": order_id,
                        "amount": {
                            "currency_code": currency,
                            "value": to_decimal(amount, currency),
                        },
                    }
                ],
            },
            request_id=request_id,
        )
        return _order(body)

    async def capture_order(self, *, paypal_order_id: str, request_id: str) -> PayPalOrder:
        body = await self._post(
            f"/v2/checkout/orders/{paypal_order_id}/capture", {}, request_id=request_id
        )
        return _order(body)

    async def refund_capture(
        self, *, capture_id: str, amount: int, currency: str, request_id: str
    ) -> PayPalRefund:
        body = await self._post(
            f"/v2/payments/captures/{capture_id}/refund",
            {"amount": {"currency_code": currency, "value": to_decimal(amount, currency)}},
            request_id=request_id,
        )
        return PayPalRefund(id=str(body["id"]), status=str(body.get("status", "PENDING")))

    async def verify_webhook(
        self, *, headers: dict[str, str], event: dict[str, Any], webhook_id: str
    ) -> bool:
        """PayPal's verification API says whether it sent this event (SUCCESS) or not."""
        body = await self._post(
            "/v1/notifications/verify-webhook-signature",
            {
                "auth_algo": headers.get("paypal-auth-algo", ""),
                "cert_url": headers.get("paypal-cert-url", ""),
                "transmission_id": headers.get("paypal-transmission-id", ""),
                "transmission_sig": headers.get("paypal-transmission-sig", ""),
                "transmission_time": headers.get("paypal-transmission-time", ""),
                "webhook_id": webhook_id,
                "webhook_event": event,
            },
        )
        return body.get("verification_status") == "SUCCESS"

    @staticmethod
    def _error(status: int | None, body: Any) -> PayPalError:
        name = body.get("name") if isinstance(body, dict) else None
        log.warning("paypal_error", status=status, name=name)
        return PayPalError(
            "payment_provider_error",
            "The payment provider did not accept the request",
            details={"provider_status": status, "provider_code": name},
        )


def _order(body: dict[str, Any]) -> PayPalOrder:
    approve = next(
        (
            link["href"]
            for link in body.get("links", [])
            if link.get("rel") in ("approve", "payer-action")
        ),
        None,
    )
    capture_id = None
    for unit in body.get("purchase_units", []):
        for capture in (unit.get("payments") or {}).get("captures", []):
            capture_id = str(capture["id"])
    return PayPalOrder(
        id=str(body["id"]),
        status=str(body.get("status", "")),
        approve_url=approve,
        capture_id=capture_id,
    )
