"""Stripe Checkout Sessions, the hosted alternative to a PaymentIntent confirmed in the page.

The session is for ONE line: the order's server-computed total (goods after discounts, plus
shipping and tax) named "Order <short id>". Per-line items cannot carry our amounts exactly:
Stripe prices a line as unit_amount x quantity, while our lines hold a discount share spread
by `discounts.allocate` and tax rounded per line, so a discounted line of 3 units may not
divide into whole cents, and shipping and tax would be extra lines to keep in sync. One line
always equals the order total, which is what the webhook checks against.

Return URLs are ours: the client may name a path (or a URL on `settings.public_url`'s origin),
never another site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from core.errors import ValidationFailed

# Stripe takes expires_at 30 minutes to 24 hours after the session's creation; the margins
# keep a request that takes a moment, or a clock a little off, inside that window.
MIN_LIFETIME = timedelta(minutes=30, seconds=60)
MAX_LIFETIME = timedelta(hours=24) - timedelta(seconds=60)
MAX_URL_LENGTH = 500


class ReturnUrlNotAllowed(ValidationFailed):
    default_code = "return_url_not_allowed"


@dataclass(frozen=True, slots=True)
class ReturnUrls:
    """Validated absolute URLs, or None for the defaults (the order's page)."""

    success: str | None = None
    cancel: str | None = None

    def resolve(self, *, public_url: str, order_id: str) -> tuple[str, str]:
        page = f"{_origin(public_url)}/orders/{order_id}"
        return (
            self.success or f"{page}?checkout=success&session_id={{CHECKOUT_SESSION_ID}}",
            self.cancel or f"{page}?checkout=cancelled",
        )


def _origin(public_url: str) -> str:
    parts = urlsplit(public_url)
    return f"{parts.scheme}://{parts.netloc}"


def return_url(value: str, *, public_url: str, field: str) -> str:
    """`value` as an absolute URL on our origin: a path (`/orders/x?y`) is put on it, a full
    URL must already be on it. Anything else (another host, `//host`, other schemes, control
    characters or backslashes, which browsers read in surprising ways) is refused."""
    origin = _origin(public_url)
    refused = ReturnUrlNotAllowed(
        "return_url_not_allowed",
        f"{field} must be a path on {origin}",
        details={"field": field},
    )
    if (
        len(value) > MAX_URL_LENGTH
        or "\\" in value
        or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value)
    ):
        raise refused
    if value.startswith("/") and not value.startswith("//"):
        return origin + value
    parts = urlsplit(value)
    if f"{parts.scheme}://{parts.netloc}".lower() != origin.lower() or parts.username:
        raise refused
    path = parts.path or "/"
    return origin + path + (f"?{parts.query}" if parts.query else "")


def check_return_urls(
    *, success_url: str | None, cancel_url: str | None, public_url: str
) -> ReturnUrls:
    return ReturnUrls(
        success=return_url(success_url, public_url=public_url, field="success_url")
        if success_url is not None
        else None,
        cancel=return_url(cancel_url, public_url=public_url, field="cancel_url")
        if cancel_url is not None
        else None,
    )


def session_expires_at(*, order_expires_at: datetime, now: datetime) -> int:
    """The order's hold, clamped into Stripe's window (as a Unix timestamp)."""
    clamped = min(max(order_expires_at, now + MIN_LIFETIME), now + MAX_LIFETIME)
    return int(clamped.timestamp())


def short_id(order_id: str) -> str:
    return order_id.replace("-", "")[:8]
