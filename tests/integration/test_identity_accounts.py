"""Accounts end to end over HTTP on the real databases: register, verify, sign in, refresh,
log out, reset; with the mails read from the embedded outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from db.connection import open_database
from db.models.identity import AuthSession, OneTimeToken, RefreshToken, SecurityEvent, User
from tests.conftest import from_address

Client = TestClient[Any, Any]
PASSWORD = "quartz-lantern-orbit-91"
EMAIL = "Ada.Lovelace@Example.com"


def outbox(settings: Settings) -> list[email.message.EmailMessage]:
    files = sorted(settings.outbox_dir.glob("*.eml"))
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in files
    ]


def link_token(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(r"token=([A-Za-z0-9_-]+)", body.get_content())
    assert match, "no link in the mail"
    return match.group(1)


async def security_kinds(settings: Settings) -> list[str]:
    async with open_database(settings.database_url):
        return [e.kind for e in await SecurityEvent.all().order_by("id")]


async def register(client: Client, *, email_address: str = EMAIL, password: str = PASSWORD) -> Any:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email_address, "password": password, "display_name": "Ada"},
    )
    return response


async def login(client: Client, *, password: str = PASSWORD, address: int = 1, **extra: Any) -> Any:
    return await client.post(
        "/api/v1/auth/login",
        json={"email": EMAIL, "password": password, **extra},
        headers=from_address(address),
    )


async def test_register_verify_login_me(client: Client, settings: Settings) -> None:
    response = await register(client)
    assert response.status == 201
    user = await response.json()
    assert user["email"] == "ada.lovelace@example.com"
    assert user["role"] == "customer"
    assert user["email_verified"] is False

    [mail] = outbox(settings)
    assert mail["To"] == "ada.lovelace@example.com"
    assert "Confirm" in mail["Subject"]
    token = link_token(mail)

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status == 200
    assert (await verified.json())["email_verified"] is True
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status == 422
    assert (await again.json())["error"]["code"] == "invalid_token"

    pair = await (await login(client)).json()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    assert pair["refresh_token"].startswith("rt_")
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status == 200
    assert (await me.json())["id"] == user["id"]
    assert await security_kinds(settings) == ["registered", "email_verified", "login_succeeded"]


async def test_register_refuses_bad_input_and_writes_nothing(
    client: Client, settings: Settings
) -> None:
    cases = [
        ({"email": "not-an-email", "password": PASSWORD}, 422, "invalid_email"),
        ({"email": EMAIL, "password": "short"}, 422, "weak_password"),
        ({"email": EMAIL, "password": "password1234"}, 422, "weak_password"),
        ({"email": EMAIL, "password": "adalovelace1"}, 422, "weak_password"),
        ({"email": EMAIL, "password": PASSWORD, "role": "super_admin"}, 422, "validation_failed"),
        ({"email": EMAIL, "password": 12345678901234}, 422, "validation_failed"),
        ({"email": "x" * 400 + "@example.com", "password": PASSWORD}, 422, "validation_failed"),
    ]
    for n, (body, status, code) in enumerate(cases):
        response = await client.post("/api/v1/auth/register", json=body, headers=from_address(n))
        assert (response.status, (await response.json())["error"]["code"]) == (status, code), body
    malformed = await client.post(
        "/api/v1/auth/register",
        data=b"{not json",
        headers={"Content-Type": "application/json", **from_address(100)},
    )
    assert (await malformed.json())["error"]["code"] == "malformed_json"
    wrong_type = await client.post(
        "/api/v1/auth/register", data=b"email=x", headers=from_address(101)
    )
    assert wrong_type.status == 415
    async with open_database(settings.database_url):
        assert await User.all().count() == 0
    assert outbox(settings) == []


async def test_duplicate_registration_is_a_conflict(client: Client) -> None:
    assert (await register(client)).status == 201
    duplicate = await register(client, email_address="ADA.LOVELACE@example.com")
    assert duplicate.status == 409
    assert (await duplicate.json())["error"]["code"] == "email_taken"


async def test_login_does_not_tell_unknown_from_wrong(client: Client) -> None:
    await register(client)
    wrong = await login(client, password="wrong password entirely")
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()


async def test_failed_logins_lock_the_account_out(client: Client, settings: Settings) -> None:
    await register(client)
    # From five different addresses: the account's own budget is what runs out.
    for n in range(5):
        failed = await login(client, password="not the password at all", address=10 + n)
        assert failed.status == 401
    locked = await login(client, address=20)  # even the right password waits now
    assert locked.status == 429
    assert (await locked.json())["error"]["code"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) > 0
    kinds = await security_kinds(settings)
    assert kinds.count("login_failed") == 5
    assert kinds.count("locked_out") == 1


async def test_one_address_is_rate_limited_on_login(client: Client) -> None:
    statuses = [(await login(client, password="x" * 12, address=30)).status for _ in range(6)]
    assert statuses == [401] * 5 + [429]


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: Client, settings: Settings
) -> None:
    await register(client)
    first = await (await login(client)).json()

    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status == 200
    second_pair = await second.json()
    assert second_pair["refresh_token"] != first["refresh_token"]

    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status == 401
    assert (await replay.json())["error"]["code"] == "refresh_token_reused"

    # The whole family is gone: the newest refresh token and the access token both fail.
    newest = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second_pair["refresh_token"]}
    )
    assert (await newest.json())["error"]["code"] == "invalid_refresh_token"
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {second_pair['access_token']}"}
    )
    assert me.status == 401
    assert (await me.json())["error"]["code"] == "session_revoked"
    assert "refresh_reused" in await security_kinds(settings)


async def test_concurrent_refreshes_of_one_token_yield_one_pair(client: Client) -> None:
    await register(client)
    pair = await (await login(client)).json()
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            for _ in range(4)
        )
    )
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 1
    assert statuses.count(401) == 3


async def test_logout_ends_the_session(client: Client, settings: Settings) -> None:
    await register(client)
    pair = await (await login(client)).json()
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert out.status == 204
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status == 401
    again = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert again.status == 204  # idempotent
    assert (await security_kinds(settings)).count("logout") == 1


async def test_password_reset_is_single_use_and_ends_every_session(
    client: Client, settings: Settings
) -> None:
    await register(client)
    pair = await (await login(client)).json()
    unknown = await client.post(
        "/api/v1/auth/password-reset/request", json={"email": "nobody@example.com"}
    )
    known = await client.post("/api/v1/auth/password-reset/request", json={"email": EMAIL})
    assert unknown.status == known.status == 202
    assert await unknown.json() == await known.json()
    reset_mail = outbox(settings)[-1]
    assert "Reset" in reset_mail["Subject"]
    token = link_token(reset_mail)

    weak = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "password1234"}
    )
    assert (await weak.json())["error"]["code"] == "weak_password"
    new_password = "vermilion-sextant-harbour-7"
    done = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": new_password}
    )
    assert done.status == 204
    reused = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": new_password}
    )
    assert (await reused.json())["error"]["code"] == "invalid_token"

    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status == 401
    assert (await login(client)).status == 401
    assert (await login(client, password=new_password)).status == 200
    async with open_database(settings.database_url):
        open_sessions = await AuthSession.filter(revoked_at__isnull=True).count()
        assert open_sessions == 1  # only the sign-in after the reset
        assert (
            await OneTimeToken.filter(used_at__isnull=True, purpose="reset_password").count() == 0
        )


async def test_expired_reset_token_is_refused(client: Client, settings: Settings) -> None:
    from datetime import timedelta

    from core.clock import utcnow

    await register(client)
    await client.post("/api/v1/auth/password-reset/request", json={"email": EMAIL})
    token = link_token(outbox(settings)[-1])
    async with open_database(settings.database_url):
        await OneTimeToken.filter(purpose="reset_password").update(
            expires_at=utcnow() - timedelta(seconds=1)
        )
    response = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "password": "vermilion-sextant-harbour-7"},
    )
    assert (await response.json())["error"]["code"] == "invalid_token"


async def test_cookie_mode_refresh_needs_origin_and_csrf(
    client: Client, settings: Settings
) -> None:
    await register(client)
    response = await login(client, use_cookie=True)
    body = await response.json()
    assert body["refresh_token"] is None
    assert body["csrf_token"]
    cookie = response.cookies["ie_refresh"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/v1/auth/"
    assert response.cookies["ie_csrf"]["httponly"] == ""

    origin = settings.public_url
    no_csrf = await client.post("/api/v1/auth/refresh", headers={"Origin": origin})
    assert (no_csrf.status, (await no_csrf.json())["error"]["code"]) == (403, "csrf_failed")
    cross_site = await client.post(
        "/api/v1/auth/refresh",
        headers={"Origin": "https://evil.example", "X-CSRF-Token": body["csrf_token"]},
    )
    assert (await cross_site.json())["error"]["code"] == "csrf_failed"

    refreshed = await client.post(
        "/api/v1/auth/refresh", headers={"Origin": origin, "X-CSRF-Token": body["csrf_token"]}
    )
    assert refreshed.status == 200
    new_body = await refreshed.json()
    assert new_body["refresh_token"] is None
    assert new_body["csrf_token"] != body["csrf_token"]

    out = await client.post(
        "/api/v1/auth/logout", headers={"Origin": origin, "X-CSRF-Token": new_body["csrf_token"]}
    )
    assert out.status == 204
    async with open_database(settings.database_url):
        assert await AuthSession.filter(revoked_at__isnull=True).count() == 0
        assert await RefreshToken.filter(used_at__isnull=True).count() == 1  # the last, now dead


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not.a.jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        # alg: none
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6InN1cGVyX2FkbWluIn0.",
    ],
)
async def test_tampered_credentials_are_refused(client: Client, header: str) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_resend_verification_mails_only_the_unverified(
    client: Client, settings: Settings
) -> None:
    await register(client)
    for address in (EMAIL, "nobody@example.com"):
        response = await client.post("/api/v1/auth/verify-email/resend", json={"email": address})
        assert response.status == 202
    assert len(outbox(settings)) == 2  # the first mail and one resend
    await client.post("/api/v1/auth/verify-email", json={"token": link_token(outbox(settings)[-1])})
    await client.post("/api/v1/auth/verify-email/resend", json={"email": EMAIL})
    assert len(outbox(settings)) == 2


def test_outbox_folder_is_the_settings_one(settings: Settings) -> None:
    assert settings.outbox_dir == Path(settings.data_dir) / "outbox"
