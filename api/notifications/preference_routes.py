"""`GET/PUT /api/v1/notification-preferences`: thin adapters over hub.preferences."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticated, principal_of
from api.openapi import operation
from api.requests import json_response, read_json
from hub.preferences import (
    LOCALES,
    MAX_DIGEST_MINUTES,
    TYPE_DEFAULTS,
    Preferences,
    PreferencesUpdate,
    load_preferences,
    replace_preferences,
)

TAGS = ("notifications",)


class ChannelChoices(BaseModel):
    in_app: bool
    web_push: bool
    email: bool


class TypePreference(BaseModel):
    type: str
    channels: ChannelChoices
    defaults: ChannelChoices


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^\d\d:\d\d$", description="Local time HH:MM")
    end: str = Field(pattern=r"^\d\d:\d\d$", description="Local time HH:MM (may be before start)")


class PreferencesBody(BaseModel):
    types: list[TypePreference]
    quiet_hours: QuietHoursBody | None = Field(
        description="Web push is skipped and email waits while the user's local time is inside"
    )
    timezone: str
    digest_minutes: int = Field(description="0 = a mail per notification; else one per window")
    locale: str


class PreferencesRequest(BaseModel):
    """The whole document (PUT replaces it); `channels` lists only the types to set, others
    keep their defaults. Each type's channels may be given in part."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, dict[str, bool]] = Field(default_factory=dict, max_length=50)
    quiet_hours: QuietHoursBody | None = None
    timezone: str = Field(default="UTC", max_length=64)
    digest_minutes: int = Field(default=0, ge=0, le=MAX_DIGEST_MINUTES)
    locale: str = Field(default="en", description=f"One of {', '.join(LOCALES)}")


def _body(preferences: Preferences) -> PreferencesBody:
    types = [
        TypePreference(
            type=type,
            channels=ChannelChoices.model_validate(
                {c.value: v for c, v in preferences.channels_of(type).items()}
            ),
            defaults=ChannelChoices.model_validate({c.value: v for c, v in defaults.items()}),
        )
        for type, defaults in TYPE_DEFAULTS.items()
    ]
    quiet = preferences.quiet_hours
    return PreferencesBody(
        types=types,
        quiet_hours=QuietHoursBody.model_validate(quiet.wire()) if quiet else None,
        timezone=preferences.timezone,
        digest_minutes=preferences.digest_minutes,
        locale=preferences.locale,
    )


@authenticated()
@operation(
    summary="Your notification preferences: channels per type, quiet hours, digest, locale",
    tags=TAGS,
    responses={200: PreferencesBody},
    auth=True,
)
async def get_notification_preferences(request: web.Request) -> web.Response:
    preferences = await load_preferences(principal_of(request).user_id)
    return json_response(_body(preferences))


@authenticated()
@operation(
    summary="Replace your notification preferences",
    description="Refused with `unknown_notification_type`, `unknown_channel`, "
    "`invalid_quiet_hours`, `invalid_timezone`, `unsupported_locale` or `invalid_digest`.",
    tags=TAGS,
    request=PreferencesRequest,
    responses={200: PreferencesBody},
    auth=True,
)
async def put_notification_preferences(request: web.Request) -> web.Response:
    body = await read_json(request, PreferencesRequest)
    quiet = body.quiet_hours
    preferences = await replace_preferences(
        user_id=principal_of(request).user_id,
        update=PreferencesUpdate(
            channels=body.channels,
            quiet_start=quiet.start if quiet else None,
            quiet_end=quiet.end if quiet else None,
            timezone=body.timezone,
            digest_minutes=body.digest_minutes,
            locale=body.locale,
        ),
    )
    return json_response(_body(preferences))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/notification-preferences", get_notification_preferences)
    app.router.add_put("/api/v1/notification-preferences", put_notification_preferences)
