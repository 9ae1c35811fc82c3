"""A customer and a staff member chat live in two browser contexts, through an outage of the
customer's network: what was written meanwhile arrives exactly once on both sides."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import HubServer, new_context, screenshot, sign_in

CUSTOMER_PASSWORD = "ada-Lovelace-Engines-1843"

# A hub and a browser start with each module: their start counts against the first test.
pytestmark = pytest.mark.timeout(120)


def _register_and_verify(page: Page, server: HubServer, address: str) -> None:
    page.goto("/register")
    page.get_by_label("Your name").fill("Ada Customer")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Account created.")).to_be_visible()
    page.goto(server.link_in_mail(address, "verify-email"))
    expect(page.get_by_text("Your email address is confirmed.")).to_be_visible()


def _messages(scope: Page | Locator, text: str) -> Locator:
    return scope.locator("li.message").filter(has_text=text)


def test_customer_and_staff_chat_live_and_through_an_outage(
    browser: Browser, hub_server: HubServer
) -> None:
    # Given a customer who registers, confirms the address and opens a conversation
    customer_context = new_context(browser, hub_server, viewport={"width": 1280, "height": 800})
    customer = customer_context.new_page()
    address = "ada@example.com"
    _register_and_verify(customer, hub_server, address)
    sign_in(customer, address, CUSTOMER_PASSWORD)
    expect(customer.get_by_role("heading", name="Start a conversation")).to_be_visible()
    customer.get_by_label("Subject").fill("Bracket tolerances")
    customer.get_by_label("Message").fill("Hello, can you check my bracket?")
    customer.get_by_role("button", name="Start chat").click()
    expect(_messages(customer, "Hello, can you check my bracket?")).to_have_count(1)

    # and a staff member (made by `ideinstein createsuperuser`) on the dashboard
    staff_context = new_context(browser, hub_server, viewport={"width": 1440, "height": 900})
    staff = staff_context.new_page()
    sign_in(staff, hub_server.staff_email, hub_server.staff_password, path="/dashboard")
    item = staff.locator("#queue li[data-conversation-id]").filter(has_text="Bracket tolerances")
    expect(item).to_contain_text("Unassigned")

    # When the staff member takes the conversation and opens it in the console
    item.get_by_role("button", name="Assign to me").click()
    expect(item).to_contain_text("Assigned to you")
    item.get_by_role("button", name="Open").click()
    console = staff.locator("#consoles section.chat")
    expect(_messages(console, "Hello, can you check my bracket?")).to_have_count(1)

    # Then typing shows on the customer's side, the reply arrives live, receipts come back
    staff_composer = console.get_by_label("Message")
    staff_composer.fill("Sure, send it over")
    expect(customer.locator(".typing")).to_have_text("Support is typing…")
    staff_composer.press("Enter")
    expect(_messages(customer, "Sure, send it over")).to_have_count(1)
    expect(customer.locator(".typing")).to_have_text("")
    expect(_messages(console, "Sure, send it over")).to_have_attribute("data-state", "read")
    expect(_messages(customer, "Hello, can you check my bracket?")).to_have_attribute(
        "data-state", "read"
    )

    # and the live feed showed the assignment, hidden and shown again by its type filter
    assigned = staff.locator("#event-feed li[data-type='chat.conversation_assigned']")
    expect(assigned).to_have_count(1)
    staff.get_by_label("chat.conversation_assigned").uncheck()
    expect(assigned).to_have_count(0)
    staff.get_by_label("chat.conversation_assigned").check()
    expect(assigned).to_have_count(1)

    # and a canned reply, once saved, goes into the console's composer
    staff.get_by_label("Shortcut (a-z, 0-9, - and _)").fill("drawing")
    staff.get_by_label("Title").fill("Ask for the drawing")
    staff.get_by_label("Text").fill("Could you attach the drawing as PDF?")
    staff.get_by_role("button", name="Save").click()
    expect(staff.locator("#canned")).to_contain_text("/drawing")
    console.get_by_label("Canned reply").select_option(label="/drawing · Ask for the drawing")
    expect(staff_composer).to_have_value("Could you attach the drawing as PDF?")
    staff_composer.press("Enter")
    expect(_messages(customer, "Could you attach the drawing as PDF?")).to_have_count(1)

    # When the customer's network is cut, they write twice and staff writes once meanwhile
    customer_context.set_offline(True)
    expect(customer.locator("#connection-banner")).to_contain_text("You are offline")
    composer = customer.get_by_label("Message")
    for text in ("Written offline, one", "Written offline, two"):
        composer.fill(text)
        composer.press("Enter")
    expect(customer.locator("li.message.pending")).to_have_count(2)
    staff_composer.fill("Reply during the outage")
    staff_composer.press("Enter")
    expect(_messages(console, "Reply during the outage")).to_have_attribute("data-state", "sent")
    expect(_messages(customer, "Reply during the outage")).to_have_count(0)

    # and the network comes back
    customer_context.set_offline(False)
    expect(customer.locator("#connection-banner")).to_be_hidden()

    # Then everything arrives exactly once, on both sides, in order
    expect(customer.locator("li.message.pending")).to_have_count(0)
    texts = [
        "Hello, can you check my bracket?",
        "Sure, send it over",
        "Could you attach the drawing as PDF?",
        "Written offline, one",
        "Written offline, two",
        "Reply during the outage",
    ]
    for text in texts:
        expect(_messages(customer, text)).to_have_count(1)
        expect(_messages(console, text)).to_have_count(1)
    expect(customer.locator("li.message[data-seq]")).to_have_count(
        console.locator("li.message[data-seq]").count()
    )
    seqs = [
        int(s)
        for s in customer.locator("li.message").evaluate_all(
            "items => items.map(i => i.dataset.seq)"
        )
    ]
    assert seqs == sorted(seqs) == list(range(seqs[0], seqs[0] + len(seqs)))

    # and the hub stored each once: a reload shows the same
    screenshot(customer, "portal-chat")
    screenshot(staff, "dashboard")
    customer.reload()
    for text in texts:
        expect(_messages(customer, text)).to_have_count(1)
    customer_context.close()
    staff_context.close()


def test_history_scrolls_back_a_page_at_a_time(browser: Browser, hub_server: HubServer) -> None:
    # Given a conversation of 45 messages, made over the API
    address = "grace@example.com"
    hub_server.api(
        "POST",
        "/auth/register",
        {"email": address, "password": CUSTOMER_PASSWORD, "display_name": "Grace"},
    )
    token = hub_server.api(
        "POST", "/auth/login", {"email": address, "password": CUSTOMER_PASSWORD}
    )["access_token"]
    opened = hub_server.api(
        "POST", "/conversations", {"subject": "Long one", "body": "message 1"}, token
    )
    conversation_id = opened["conversation"]["id"]
    for n in range(2, 46):
        hub_server.api(
            "POST",
            f"/conversations/{conversation_id}/messages",
            {"client_msg_id": f"m-{n}", "body": f"message {n}"},
            token,
        )
    context = new_context(browser, hub_server)
    page = context.new_page()
    sign_in(page, address, CUSTOMER_PASSWORD, path=f"/chat/{conversation_id}")

    # When the conversation opens, the latest page shows
    expect(page.locator("li.message[data-seq]")).to_have_count(30)
    expect(page.locator("li.message[data-seq]").first).to_have_attribute("data-seq", "16")
    expect(page.locator("li.message[data-seq]").last).to_have_attribute("data-seq", "45")

    # Then "Load earlier messages" (keyboard) brings the rest, and the button goes away
    earlier = page.get_by_role("button", name="Load earlier messages")
    earlier.focus()
    page.keyboard.press("Enter")
    expect(page.locator("li.message[data-seq]")).to_have_count(45)
    expect(page.locator("li.message[data-seq]").first).to_have_attribute("data-seq", "1")
    expect(earlier).to_be_hidden()
    context.close()
