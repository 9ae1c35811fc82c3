"""Mail links and webhooks: one-click unsubscribe (RFC 8058), the open pixel, the click
redirect, the bounce webhook and per-variant results. Thin adapters over hub.email.

- `GET /api/v1/email/unsubscribe/{token}` shows a page with a button; only the POST
  unsubscribes (link scanners and prefetchers follow GETs). Mail providers POST
  `List-Unsubscribe=One-Click` to the same URL.
- `GET /api/v1/email/click/{token}` redirects only to PUBLIC_URL or EMAIL_REDIRECT_HOSTS.
- `POST /api/v1/email/bounces` needs `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the
  body keyed with EMAIL_WEBHOOK_SECRET>`; with no secret set the webhook does not exist.
"""

from __future__ import annotations

import html
import json

from aiohttp import web
from pydantic import BaseModel

from api.auth import public, requires
from api.keys import BUS, EMAIL, SETTINGS
from api.openapi import operation
from api.requests import json_response
from core.errors import NotFound, Unauthorized, ValidationFailed
from core.permissions import Permission
from hub.email.suppression import (
    announce_suppressed,
    apply_bounce_events,
    apply_unsubscribe,
    check_webhook_signature,
    parse_bounce_payload,
)
from hub.email.tracking import PIXEL_GIF, record_click, record_open
from hub.email.variants import variant_results

TAGS = ("email",)
SIGNATURE_HEADER = "X-Webhook-Signature"
MAX_WEBHOOK_BYTES = 1_048_576

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:480px;margin:48px auto;">
<h1 style="font-size:20px;">{title}</h1>{content}</body></html>"""


def _page(title: str, content: str, *, status: int = 200) -> web.Response:
    body = _PAGE.format(title=html.escape(title), content=content)
    return web.Response(text=body, status=status, content_type="text/html")


class BounceResult(BaseModel):
    events: int
    suppressed: int


class VariantStats(BaseModel):
    template: str
    variant: str
    sent: int
    opened: int
    clicked: int
    bounced: int
    open_rate: float
    click_rate: float
    bounce_rate: float


class VariantStatsPage(BaseModel):
    items: list[VariantStats]


@public()
@operation(
    summary="The unsubscribe page of a mail's link (a button that confirms with a POST)",
    tags=TAGS,
    responses={200: None, 404: None},
    content_types={200: "text/html"},
)
async def email_unsubscribe_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    target = request.app[EMAIL].composer.links.read_unsubscribe(token)
    form = (
        f"<p>Stop emails about <strong>{html.escape(target.type)}</strong> to "
        f"{html.escape(target.address)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


@public()
@operation(
    summary="One-click unsubscribe (RFC 8058): no more emails of this type",
    description="Mail providers POST `List-Unsubscribe=One-Click`; the signed token names "
    "the user, the address and the notification type. Idempotent.",
    tags=TAGS,
    responses={200: None, 404: None},
    content_types={200: "text/html"},
)
async def email_unsubscribe(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    target = request.app[EMAIL].composer.links.read_unsubscribe(token)
    await apply_unsubscribe(user_id=target.user_id, address=target.address, type=target.type)
    await announce_suppressed(
        request.app[BUS], address=target.address, scope=target.type, reason="unsubscribe"
    )
    return _page("Unsubscribed", "<p>You will no longer receive these emails.</p>")


@public()
@operation(
    summary="The open-tracking pixel of a mail (a 1x1 GIF)",
    tags=TAGS,
    responses={200: None},
    content_types={200: "image/gif"},
)
async def email_open_pixel(request: web.Request) -> web.Response:
    token = request.match_info["token"].removesuffix(".gif")
    message_id = request.app[EMAIL].composer.links.read_open(token)
    await record_open(message_id)
    return web.Response(
        body=PIXEL_GIF,
        content_type="image/gif",
        headers={"Cache-Control": "no-store, private"},
    )


@public()
@operation(
    summary="A tracked link of a mail: counts the click, then redirects",
    description="Redirects only to PUBLIC_URL's host or EMAIL_REDIRECT_HOSTS; anything else "
    "is refused with `redirect_not_allowed` (no open redirect).",
    tags=TAGS,
    responses={302: None, 404: None, 422: None},
)
async def email_click(request: web.Request) -> web.Response:
    message_id, target = request.app[EMAIL].composer.links.read_click(request.match_info["token"])
    await record_click(message_id, target)
    return web.Response(status=302, headers={"Location": target})


@public()
@operation(
    summary="Bounce and complaint webhook (Amazon SES or SendGrid shaped events)",
    description="Authenticated by `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw "
    "body, keyed with EMAIL_WEBHOOK_SECRET>`. Hard bounces and complaints put the address on "
    "the suppression list.",
    tags=TAGS,
    responses={200: BounceResult, 401: None, 404: None},
)
async def email_bounces(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS].email_webhook_secret
    if secret is None:
        raise NotFound("not_found", "No such resource")
    body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise ValidationFailed("payload_too_large", "The webhook body is too large")
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not check_webhook_signature(secret=secret.get_secret_value(), body=body, header=header):
        raise Unauthorized("invalid_signature", "The webhook signature does not match")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("malformed_json", "The body is not valid JSON") from None
    events = parse_bounce_payload(payload)
    suppressed = await apply_bounce_events(events)
    for event in events:
        await announce_suppressed(
            request.app[BUS], address=event.address, scope="*", reason=event.kind.value
        )
    return json_response(BounceResult(events=len(events), suppressed=suppressed))


@requires(Permission.DASHBOARD_READ)
@operation(
    summary="Mails sent, opened, clicked and bounced per template and A/B variant",
    tags=TAGS,
    responses={200: VariantStatsPage},
    auth=True,
)
async def email_stats(request: web.Request) -> web.Response:
    template = request.query.get("template") or None
    rows = await variant_results(template)
    items = [
        VariantStats(
            template=r.template,
            variant=r.variant,
            sent=r.sent,
            opened=r.opened,
            clicked=r.clicked,
            bounced=r.bounced,
            open_rate=r.open_rate,
            click_rate=r.click_rate,
            bounce_rate=r.bounce_rate,
        )
        for r in rows
    ]
    return json_response(VariantStatsPage(items=items))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/email/unsubscribe/{token}", email_unsubscribe_page)
    r.add_post("/api/v1/email/unsubscribe/{token}", email_unsubscribe)
    r.add_get("/api/v1/email/open/{token}", email_open_pixel)
    r.add_get("/api/v1/email/click/{token}", email_click)
    r.add_post("/api/v1/email/bounces", email_bounces)
    r.add_get("/api/v1/email/stats", email_stats)
