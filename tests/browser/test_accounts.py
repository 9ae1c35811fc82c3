"""Accounts in the browser: signing in through an OpenID provider (the fake one, on loopback)
and resuming that session from its cookie; resetting a password from the mailed link; the
service worker registering for web push."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import HubServer, new_context, sign_in
from tests.fakes.oidc_provider import FakeOpenIDProvider, Identity
from tests.s3 import free_port

PASSWORD = "Lamarr-Frequency-Hopping-1942"
NEW_PASSWORD = "Lamarr-Spread-Spectrum-1962"

# A hub and a browser start with each module: their start counts against the first test.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOpenIDProvider]:
    """The fake provider, served from a thread of its own (the hub calls it over loopback)."""
    fake = FakeOpenIDProvider(
        client_id="google-client-id",
        client_secret="google-client-secret-0123456789",
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        identity=Identity("subject-hedy", "hedy@example.com", name="Hedy Lamarr"),
    )
    port = free_port()
    fake.attach(f"http://127.0.0.1:{port}")
    ready = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []

    async def serve() -> None:
        runner = web.AppRunner(fake.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        stop_box.append(stop)
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    # A loop of its own in a thread: Playwright's sync API keeps one running in this thread.
    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "the fake provider did not start"
    try:
        yield fake
    finally:
        loop_box[0].call_soon_threadsafe(stop_box[0].set)
        thread.join(10)


@pytest.fixture(scope="module")
def hub_env(idp: FakeOpenIDProvider) -> dict[str, str]:
    return {
        "OAUTH_GOOGLE_CLIENT_ID": idp.client_id,
        "OAUTH_GOOGLE_CLIENT_SECRET": idp.client_secret,
        "OAUTH_GOOGLE_DISCOVERY_URL": idp.discovery_url,
    }


@pytest.fixture
def page(browser: Browser, hub_server: HubServer) -> Iterator[Page]:
    context = new_context(browser, hub_server)
    yield context.new_page()
    context.close()


def test_provider_sign_in_resumes_from_the_cookie(page: Page, idp: FakeOpenIDProvider) -> None:
    # Given the sign-in page, which offers the enabled provider
    page.goto("/sign-in")
    provider = page.get_by_role("link", name=re.compile(r"^Continue with "))
    expect(provider).to_have_count(1)

    # When the visitor signs in there (the fake provider says yes at once)
    provider.click()

    # Then they land on the portal signed in, as the provider's identity
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    expect(page.locator(".topbar")).to_contain_text("Hedy Lamarr")
    assert len(idp.token_requests) == 1
    assert page.url.endswith("/chat")

    # and a reload resumes the session from the refresh cookie
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # and the service worker for web push registers under this page's CSP
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("button", name="Enable push notifications")).to_be_visible()
    script = page.evaluate(
        """async () => {
            await navigator.serviceWorker.register('/sw.js', {scope: '/'});
            const ready = await navigator.serviceWorker.ready;
            return ready.active.scriptURL;
        }"""
    )
    assert script.endswith("/sw.js")

    # When they sign out, a reload finds no session
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_password_reset_from_the_mailed_link(page: Page, hub_server: HubServer) -> None:
    # Given an account
    address = "lamarr@example.com"
    hub_server.api("POST", "/auth/register", {"email": address, "password": PASSWORD})

    # When its owner asks for a reset and follows the mailed link
    page.goto("/sign-in")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(address)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_text("a reset link is on its way")).to_be_visible()
    page.goto(hub_server.link_in_mail(address, "reset-password"))
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_text("Your password is changed.")).to_be_visible()

    # Then the old password no longer works and the new one does
    sign_in(page, address, PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("The email or password is wrong")
    sign_in(page, address, NEW_PASSWORD)
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
