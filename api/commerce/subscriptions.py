"""Maintenance contracts billed by Stripe Billing: subscribe, cancel at period end. Status
changes and failed renewals arrive as webhooks (webhooks.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from api.commerce.payments_stripe import PROVIDER, StripeGateway
from core.errors import Conflict, NotFound, ServiceUnavailable
from db.models.commerce import ProductKind, Subscription, SubscriptionStatus, Variant
from db.models.identity import User


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: UUID
    variant_id: UUID
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    client_secret: str | None = None


def subscription_view(row: Subscription, client_secret: str | None = None) -> SubscriptionView:
    return SubscriptionView(
        id=row.id,
        variant_id=row.variant_id,  # type: ignore[attr-defined]
        status=SubscriptionStatus(row.status).value,
        cancel_at_period_end=row.cancel_at_period_end,
        current_period_end=row.current_period_end,
        client_secret=client_secret,
    )


async def subscribe(
    *, user_id: UUID, variant_id: UUID, gateway: StripeGateway | None
) -> SubscriptionView:
    if gateway is None:
        raise ServiceUnavailable("payments_unavailable", "Card payments are not configured")
    variant = await Variant.get_or_none(id=variant_id, active=True).prefetch_related("product")
    if variant is None:
        raise NotFound("variant_not_found", "No such variant")
    if variant.product.kind != ProductKind.MAINTENANCE_CONTRACT or not variant.provider_price_id:
        raise Conflict("not_subscribable", "Only maintenance contracts are subscribed to")
    if await Subscription.filter(
        user_id=user_id,
        variant_id=variant_id,
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE],
    ).exists():
        raise Conflict("already_subscribed", "You already hold this contract")
    user = await User.get(id=user_id)
    attempt = await Subscription.filter(user_id=user_id, variant_id=variant_id).count()
    result = await gateway.create_subscription(
        email=user.email,
        user_id=str(user_id),
        price_id=variant.provider_price_id,
        idempotency_key=f"subscribe:{user_id}:{variant_id}:{attempt}",
    )
    status = {
        "active": SubscriptionStatus.ACTIVE,
        "trialing": SubscriptionStatus.ACTIVE,
        "past_due": SubscriptionStatus.PAST_DUE,
    }.get(result.status, SubscriptionStatus.INCOMPLETE)
    row, _ = await Subscription.get_or_create(
        provider_subscription_id=result.id,
        defaults={
            "user_id": user_id,
            "variant_id": variant_id,
            "provider": PROVIDER,
            "provider_customer_id": result.customer_id,
            "status": status,
            "current_period_end": result.current_period_end,
        },
    )
    return subscription_view(row, client_secret=result.client_secret)


async def cancel_at_period_end(
    *, user_id: UUID, subscription_id: UUID, gateway: StripeGateway | None
) -> SubscriptionView:
    if gateway is None:
        raise ServiceUnavailable("payments_unavailable", "Card payments are not configured")
    row = await Subscription.get_or_none(id=subscription_id, user_id=user_id)
    if row is None:
        raise NotFound("subscription_not_found", "No such subscription")
    result = await gateway.cancel_at_period_end(
        subscription_id=row.provider_subscription_id,
        idempotency_key=f"cancel:{row.id}",
    )
    row.cancel_at_period_end = result.cancel_at_period_end
    row.current_period_end = result.current_period_end or row.current_period_end
    await row.save(update_fields=["cancel_at_period_end", "current_period_end", "updated_at"])
    return subscription_view(row)


async def change_plan(
    *, user_id: UUID, subscription_id: UUID, variant_id: UUID, gateway: StripeGateway | None
) -> SubscriptionView:
    """Upgrade or downgrade a contract to another of the product's recurring variants."""
    if gateway is None:
        raise ServiceUnavailable("payments_unavailable", "Card payments are not configured")
    row = await Subscription.get_or_none(id=subscription_id, user_id=user_id)
    if row is None or row.status == SubscriptionStatus.CANCELLED:
        raise NotFound("subscription_not_found", "No such subscription")
    variant = await Variant.get_or_none(id=variant_id, active=True).prefetch_related("product")
    if variant is None:
        raise NotFound("variant_not_found", "No such variant")
    if variant.product.kind != ProductKind.MAINTENANCE_CONTRACT or not variant.provider_price_id:
        raise Conflict("not_subscribable", "Only maintenance contracts are subscribed to")
    if variant.id == row.variant_id:  # type: ignore[attr-defined]
        raise Conflict("same_plan", "The subscription is on this plan already")
    result = await gateway.change_price(
        subscription_id=row.provider_subscription_id,
        price_id=variant.provider_price_id,
        idempotency_key=f"change:{row.id}:{variant.id}:{row.updated_at.timestamp():.6f}",
    )
    row.variant_id = variant.id
    row.current_period_end = result.current_period_end or row.current_period_end
    await row.save(update_fields=["variant_id", "current_period_end", "updated_at"])
    return subscription_view(row)


async def list_subscriptions(*, user_id: UUID) -> list[SubscriptionView]:
    rows = await Subscription.filter(user_id=user_id).order_by("-created_at")
    return [subscription_view(row) for row in rows]
