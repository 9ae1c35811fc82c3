"""Inbox (list, mark read) and web push registration: thin adapters over hub.notify and
hub.push. The VAPID public key is public: browsers need it before anyone signs in."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticated, principal_of, public
from api.keys import HUB, PUSH
from api.openapi import operation
from api.requests import json_response, path_uuid, read_json, read_query
from hub.notify import NotificationView
from hub.push import register_subscription, remove_subscription

NOTIFICATION_TAGS = ("notifications",)
PUSH_TAGS = ("push",)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VapidPublicKey(BaseModel):
    public_key: str = Field(description="applicationServerKey for pushManager.subscribe()")


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(min_length=1, max_length=100)
    auth: str = Field(min_length=1, max_length=50)


class SubscribeRequest(BaseModel):
    """The browser's PushSubscription.toJSON() (its expirationTime is accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=2000)
    keys: SubscriptionKeys


class UnsubscribeRequest(Strict):
    endpoint: str = Field(min_length=1, max_length=2000)


class SubscriptionBody(BaseModel):
    id: UUID
    endpoint: str


class InboxQuery(BaseModel):
    after: UUID | None = None
    limit: int = Field(default=50, ge=1, le=100)
    unread: bool = False


class NotificationBody(BaseModel):
    id: UUID
    type: str
    title: str
    body: str
    link: str
    data: dict[str, Any]
    created_at: datetime
    read: bool


class NotificationPage(BaseModel):
    items: list[NotificationBody]
    has_more: bool
    next_after: UUID | None = Field(description="Pass as `after` for the next page")


class ReadAll(BaseModel):
    ids: list[UUID]


def _notification(view: NotificationView) -> NotificationBody:
    return NotificationBody.model_validate(view.wire())


@public()
@operation(
    summary="The VAPID public key (applicationServerKey) for subscribing to web push",
    tags=PUSH_TAGS,
    responses={200: VapidPublicKey},
)
async def vapid_public_key(request: web.Request) -> web.Response:
    return json_response(VapidPublicKey(public_key=request.app[PUSH].application_server_key))


@authenticated()
@operation(
    summary="Register this browser's push subscription (idempotent on the endpoint)",
    description="A known endpoint is updated and moves to the caller. Refused with "
    "`invalid_push_endpoint` (not https, or not a public host) or `invalid_push_keys`.",
    tags=PUSH_TAGS,
    request=SubscribeRequest,
    responses={201: SubscriptionBody, 200: SubscriptionBody},
    auth=True,
)
async def subscribe(request: web.Request) -> web.Response:
    body = await read_json(request, SubscribeRequest)
    view = await register_subscription(
        user_id=principal_of(request).user_id,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        user_agent=request.headers.get(hdrs.USER_AGENT, ""),
    )
    return json_response(
        SubscriptionBody(id=view.id, endpoint=view.endpoint), status=201 if view.created else 200
    )


@authenticated()
@operation(
    summary="Remove one of your push subscriptions",
    tags=PUSH_TAGS,
    request=UnsubscribeRequest,
    responses={204: None},
    auth=True,
)
async def unsubscribe(request: web.Request) -> web.Response:
    body = await read_json(request, UnsubscribeRequest)
    await remove_subscription(user_id=principal_of(request).user_id, endpoint=body.endpoint)
    return web.Response(status=204)


@authenticated()
@operation(
    summary="Your notifications, oldest first after the `after` cursor",
    tags=NOTIFICATION_TAGS,
    responses={200: NotificationPage},
    auth=True,
)
async def list_notifications(request: web.Request) -> web.Response:
    query = read_query(request, InboxQuery)
    views, has_more = await request.app[HUB].inbox.page(
        user_id=principal_of(request).user_id,
        after_id=query.after,
        limit=query.limit,
        unread_only=query.unread,
    )
    next_after = views[-1].id if has_more and views else None
    items = [_notification(v) for v in views]
    return json_response(NotificationPage(items=items, has_more=has_more, next_after=next_after))


@authenticated()
@operation(
    summary="Mark one of your notifications read",
    tags=NOTIFICATION_TAGS,
    responses={200: NotificationBody},
    auth=True,
)
async def mark_read(request: web.Request) -> web.Response:
    notification_id = path_uuid(request, "notification_id", not_found="notification_not_found")
    view = await request.app[HUB].inbox.mark_read(
        user_id=principal_of(request).user_id, notification_id=notification_id
    )
    return json_response(_notification(view))


@authenticated()
@operation(
    summary="Mark all your notifications read; returns the ids that were unread",
    tags=NOTIFICATION_TAGS,
    responses={200: ReadAll},
    auth=True,
)
async def mark_all_read(request: web.Request) -> web.Response:
    ids = await request.app[HUB].inbox.mark_all_read(user_id=principal_of(request).user_id)
    return json_response(ReadAll(ids=ids))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/push/vapid-public-key", vapid_public_key)
    r.add_post("/api/v1/push/subscriptions", subscribe)
    r.add_delete("/api/v1/push/subscriptions", unsubscribe)
    r.add_get("/api/v1/notifications", list_notifications)
    r.add_post("/api/v1/notifications/read-all", mark_all_read)
    r.add_post("/api/v1/notifications/{notification_id}/read", mark_read)
