"""Every page against axe-core (WCAG 2.1 A and AA: no serious or critical violation), at desktop
width and at 375 px (nothing wider than the screen), without CSP violations; the portal works
by keyboard alone; the notification centre counts what arrived while the customer was away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, expect

from tests.browser.conftest import (
    HubServer,
    new_context,
    screenshot,
    serious_violations,
    sign_in,
)

PASSWORD = "Babbage-Difference-Engine-1822"
PHONE: ViewportSize = {"width": 375, "height": 740}

# A hub and a browser start with each module: their start counts against the first test.
pytestmark = pytest.mark.timeout(120)


class PageChecks:
    """axe and the 375 px layout on the page as it is now; CSP reports collected throughout."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.csp_errors: list[str] = []
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp_errors.append(message.text)

    def check(self, name: str) -> None:
        page = self.page
        assert serious_violations(page) == [], name
        size = page.viewport_size
        page.set_viewport_size(PHONE)
        try:
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name}: {overflow}px wider than a 375px screen"
            assert serious_violations(page) == [], f"{name} at 375px"
        finally:
            if size is not None:
                page.set_viewport_size(size)
        assert self.csp_errors == [], name


def _register(server: HubServer, address: str) -> str:
    server.api("POST", "/auth/register", {"email": address, "password": PASSWORD})
    token: str = server.api("POST", "/auth/login", {"email": address, "password": PASSWORD})[
        "access_token"
    ]
    return token


@pytest.fixture
def page(browser: Browser, hub_server: HubServer) -> Iterator[Page]:
    context = new_context(browser, hub_server, viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def test_signed_out_pages(page: Page) -> None:
    checks = PageChecks(page)
    pages = {
        "/sign-in": "Sign in",
        "/sign-in?error=oauth_state_mismatch": "Sign in",
        "/register": "Create an account",
        "/reset-password": "Reset your password",
        "/reset-password?token=not-a-real-one": "Reset your password",
        "/verify-email?token=not-a-real-one": "Confirm your email",
        "/dashboard": "Staff sign-in",
    }
    for path, heading in pages.items():
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        if "verify-email" in path:
            expect(page.locator("p.error")).to_have_text("This link is invalid or has expired")
        checks.check(path)


def test_portal_and_dashboard_pages_with_a_notification(
    browser: Browser, hub_server: HubServer, page: Page
) -> None:
    # Given a customer with an open conversation, who is not on the site
    token = _register(hub_server, "charles@example.com")
    hub_server.api("POST", "/conversations", {"subject": "Delivery date", "body": "By May?"}, token)
    hub_server.api(
        "POST", "/conversations", {"subject": "Need a quote", "body": "For 200 brackets"}, token
    )

    # When staff answer from the dashboard
    staff = new_context(browser, hub_server, viewport={"width": 1440, "height": 900}).new_page()
    staff_checks = PageChecks(staff)
    sign_in(staff, hub_server.staff_email, hub_server.staff_password, path="/dashboard")
    item = staff.locator("#queue li").filter(has_text="Need a quote")
    expect(item).to_contain_text("Unassigned")
    staff_checks.check("dashboard")
    # (two conversations side by side in the console)
    staff.locator("#queue li").filter(has_text="Delivery date").get_by_role(
        "button", name="Open"
    ).click()
    item.get_by_role("button", name="Open").click()
    expect(staff.locator("#consoles section.chat")).to_have_count(2)
    console = staff.locator("#consoles section.chat").filter(has_text="Need a quote")
    expect(console.locator("li.message").filter(has_text="For 200 brackets")).to_have_count(1)
    console.get_by_label("Message").fill("Your quote is ready")
    console.get_by_label("Message").press("Enter")
    expect(console.locator("li.message[data-state='sent']")).to_have_count(1)
    staff.get_by_label("My status").select_option("away")
    expect(staff.locator("#online li")).to_contain_text("You · away")
    staff_checks.check("dashboard with a console")

    # Then the customer finds it counted, and on the notifications page
    checks = PageChecks(page)
    sign_in(page, "charles@example.com", PASSWORD)
    expect(page.locator("#unread-badge")).to_have_text("1")
    customer_online = staff.locator("#online li").filter(has_text="Customer")
    expect(customer_online).to_contain_text("online")
    other = staff.locator("#consoles section.chat").filter(has_text="Delivery date")
    expect(other.locator("li.message")).to_have_count(1)  # the reply went to one only
    expect(page.locator("li.message").filter(has_text="Your quote is ready")).to_have_count(1)
    checks.check("chat")
    page.get_by_role("link", name="Notifications").click()
    notice = page.locator("#notification-list li.unread")
    expect(notice).to_contain_text("Your quote is ready")
    expect(page.get_by_role("button", name="Enable push notifications")).to_be_visible()
    checks.check("notifications")
    screenshot(page, "portal-notifications")
    notice.get_by_role("button", name="Mark read").click()
    expect(page.locator("#unread-badge")).to_be_hidden()
    expect(page.locator("#notification-list li.unread")).to_have_count(0)
    page.get_by_role("link", name="Support chat").click()
    expect(page.get_by_role("button", name="New conversation")).to_be_visible()
    page.get_by_role("button", name="New conversation").click()
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    checks.check("new conversation")
    page.set_viewport_size(PHONE)
    screenshot(page, "portal-375px")
    staff.context.close()


def test_the_portal_works_by_keyboard_alone(hub_server: HubServer, page: Page) -> None:
    # Given an account
    _register(hub_server, "hopper@example.com")
    page.goto("/sign-in")

    # When the customer signs in and writes using only the keyboard
    def tab_to(selector: str) -> None:
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("input[name=email]")
    page.keyboard.type("hopper@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Start a conversation")).to_be_visible()
    tab_to("input[name=subject]")
    page.keyboard.type("Compiler question")
    page.keyboard.press("Tab")
    page.keyboard.type("Can you read COBOL drawings?")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")

    # Then the conversation opens with the message, and Enter in the composer sends
    expect(page.locator("li.message").filter(has_text="COBOL")).to_have_count(1)
    tab_to("textarea[name=body]")
    page.keyboard.type("And FORTRAN ones?")
    page.keyboard.press("Enter")
    expect(page.locator("li.message[data-state='sent']").filter(has_text="FORTRAN")).to_have_count(
        1
    )
