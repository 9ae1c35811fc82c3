"""The hub goes away and comes back: the page reconnects by itself (backoff with jitter), and
what was written meanwhile (the customer's outbox) and just after (staff) arrives once."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import HubServer, new_context, sign_in

PASSWORD = "Hamilton-Apollo-Guidance-1969"

# A hub and a browser start with each module: their start counts against the first test.
pytestmark = pytest.mark.timeout(120)


def test_the_page_reconnects_after_the_hub_restarts(
    browser: Browser, hub_server: HubServer
) -> None:
    # Given a customer in a conversation, and a staff member on the API
    address = "margaret@example.com"
    hub_server.api("POST", "/auth/register", {"email": address, "password": PASSWORD})
    staff_token = hub_server.api(
        "POST",
        "/auth/login",
        {"email": hub_server.staff_email, "password": hub_server.staff_password},
    )["access_token"]
    context = new_context(browser, hub_server)
    page = context.new_page()
    sign_in(page, address, PASSWORD)
    page.get_by_label("Subject").fill("Landing software")
    page.get_by_label("Message").fill("Before the restart")
    page.get_by_role("button", name="Start chat").click()
    expect(page.locator("li.message[data-state='sent']")).to_have_count(1)
    conversation_id = page.url.rsplit("/", 1)[-1]

    # When the hub stops, the customer writes, and the hub starts again
    hub_server.stop()
    expect(page.locator("#connection-banner")).to_contain_text("Reconnecting")
    page.get_by_label("Message").fill("While the hub was down")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("li.message.pending")).to_have_count(1)
    hub_server.start()
    hub_server.api(
        "POST",
        f"/conversations/{conversation_id}/messages",
        {"client_msg_id": "staff-after-restart", "body": "Right after the restart"},
        staff_token,
    )

    # Then the page is back on its own, and every message is there once
    expect(page.locator("#connection-banner")).to_be_hidden(timeout=20_000)
    expect(page.locator("li.message.pending")).to_have_count(0)
    for text in ("Before the restart", "While the hub was down", "Right after the restart"):
        expect(page.locator("li.message").filter(has_text=text)).to_have_count(1)
    stored = hub_server.api(
        "GET", f"/conversations/{conversation_id}/messages?limit=50", token=staff_token
    )["items"]
    bodies = [m["body"] for m in stored if m["kind"] == "text"]
    # (the last two race each other to the hub: either order is right)
    assert bodies[0] == "Before the restart"
    assert sorted(bodies[1:]) == ["Right after the restart", "While the hub was down"]
    context.close()
