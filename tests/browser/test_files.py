"""Files in the portal: a CAD part is uploaded over tus with its progress bar, its preview (the
rendered PNG, and the 3D canvas where WebGL works) appears after the render with the geometry
and the scan status, and the dashboard shows the upload and the render live; an upload is
paused, resumed, paused again and finished after a page reload without starting over;
versions, rollback and share links by keyboard; the shop and orders up to the payment step.
axe (WCAG 2.1 AA, no serious or critical violation) at desktop width and 375 px on each page."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import HubServer, new_context, screenshot, sign_in
from tests.browser.test_accessibility import PageChecks

SAMPLES = Path("/work/shared/cad-samples")
SMALL_PART = SAMPLES / "angle_block.STL"  # 35 KB
LARGER_PART = SAMPLES / "1002_tray_bottom.STL"  # 1.3 MB
PASSWORD = "Lovelace-Analytical-Engine-1843"

# A hub and a browser start with each module: their start counts against the first test.
pytestmark = pytest.mark.timeout(180)


_setup_addresses = itertools.count(1)


def _customer(server: HubServer, email_address: str, name: str = "") -> str:
    """Register a customer; returns an access token (for setup calls)."""
    address = f"198.51.100.{next(_setup_addresses)}"  # a budget of its own for each account
    account = {"email": email_address, "password": PASSWORD}
    server.api("POST", "/auth/register", {**account, "display_name": name}, address=address)
    token: str = server.api("POST", "/auth/login", account, address=address)["access_token"]
    return token


@pytest.fixture
def page(browser: Browser, hub_server: HubServer) -> Iterator[Page]:
    context = new_context(browser, hub_server, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_an_upload_shows_progress_then_its_preview_and_reaches_the_dashboard_live(
    browser: Browser, hub_server: HubServer, page: Page
) -> None:
    # Given a customer on the files page, with a conversation open, and then a staff member on
    # the dashboard, who sees who is online (presence:list) with their names
    token = _customer(hub_server, "grace@example.com", "Grace Hopper")
    hub_server.api(
        "POST", "/conversations", {"subject": "My bracket", "body": "See my part"}, token
    )
    checks = PageChecks(page)
    sign_in(page, "grace@example.com", PASSWORD)
    page.get_by_role("link", name="Files").click()
    staff = new_context(browser, hub_server, viewport={"width": 1440, "height": 900}).new_page()
    staff_checks = PageChecks(staff)
    sign_in(staff, hub_server.staff_email, hub_server.staff_password, path="/dashboard")
    expect(staff.locator("#online li").filter(has_text="Grace Hopper")).to_contain_text(
        "Customer Grace Hopper · online"
    )
    expect(staff.locator("#render-farm")).to_contain_text("running: 0")
    expect(staff.locator("#security-events li[data-kind='login_succeeded']").first).to_be_visible()
    expect(staff.locator("#chart-conversations rect[data-value='1']")).to_have_count(1)
    expect(page.get_by_role("heading", name="Files", level=1)).to_be_visible()
    checks.check("files, empty")

    # When the customer uploads a part
    page.get_by_label("Choose a file to upload").set_input_files(str(SMALL_PART))

    # Then its progress bar fills, and it is listed
    upload = page.locator("li.upload")
    expect(upload.locator("progress")).to_have_attribute("aria-label", "Uploading angle_block.STL")
    expect(upload).to_have_attribute("data-state", "done")
    expect(upload.locator("progress")).to_have_js_property("value", 100)
    expect(page.locator("#file-list li")).to_contain_text("angle_block.STL")

    # and the dashboard's feed showed the upload live, and the render farm its job
    uploaded = staff.locator("#event-feed li[data-type='file.uploaded']")
    expect(uploaded).to_contain_text("angle_block.STL")
    expect(staff.locator("#render-farm tr[data-status='succeeded']")).to_have_count(
        1, timeout=60_000
    )
    expect(staff.locator("#chart-renders rect[data-value='1']")).to_have_count(1)

    # and the file's page shows the preview, the geometry and the scan status
    upload.get_by_role("link", name="Open angle_block.STL").click()
    expect(page.get_by_role("heading", name="angle_block.STL", level=1)).to_be_visible()
    expect(page.locator("#scan-status")).to_have_attribute("data-scan", "unscanned")
    expect(page.locator("#scan-status")).to_contain_text("Not scanned")
    poster = page.locator("#preview-image")
    canvas = page.locator("#preview canvas.model-canvas")
    expect(poster.or_(canvas)).to_be_visible(timeout=60_000)
    expect(page.locator("#preview")).to_have_attribute("data-mode", "3d", timeout=20_000)
    expect(canvas).to_be_visible()
    expect(page.locator("#geometry")).to_contain_text("Triangles")
    expect(page.locator("#versions li")).to_have_count(1)
    checks.check("file page")
    screenshot(page, "portal-3d-preview")
    canvas.focus()
    page.keyboard.press("ArrowLeft")  # the model turns by keyboard too
    page.get_by_role("link", name="← All files").click()
    expect(page.locator("#file-list li")).to_have_count(1)
    screenshot(page, "portal-files")
    # and beside the customer's conversation, the dashboard shows their files and orders
    staff.locator("#queue li").filter(has_text="My bracket").get_by_role(
        "button", name="Open"
    ).click()
    context_panel = staff.get_by_role("group", name="The customer's files and orders")
    expect(context_panel.locator(".context-files")).to_contain_text("angle_block.STL")
    expect(context_panel.locator(".context-orders")).to_contain_text("No orders.")
    staff_checks.check("dashboard with render jobs")
    screenshot(staff, "dashboard-render-farm")
    # and a dashboard opened afterwards lists the finished job from the API
    staff.reload()
    expect(staff.locator("#render-farm tr[data-status='succeeded']")).to_have_count(1)
    expect(staff.locator("#render-farm")).to_contain_text("done: 1")
    expect(staff.locator("#chart-renders rect[data-value='1']")).to_have_count(1)
    staff.context.close()


def test_an_upload_pauses_resumes_and_continues_after_a_reload(
    hub_server: HubServer, page: Page
) -> None:
    # Given a customer whose upload goes slowly (Chromium's network throttling)
    _customer(hub_server, "margaret@example.com")
    sign_in(page, "margaret@example.com", PASSWORD)
    page.get_by_role("link", name="Files").click()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    slow = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 96_000}
    cdp.send("Network.emulateNetworkConditions", slow)

    def percent() -> int:
        value: int = page.locator("li.upload progress").evaluate("p => p.value")
        return value

    # When the upload starts, is paused, resumed and paused again
    page.get_by_label("Choose a file to upload").set_input_files(str(LARGER_PART))
    upload = page.locator("li.upload")
    page.wait_for_function("() => document.querySelector('li.upload progress')?.value >= 5")
    upload.get_by_role("button", name="Pause").click()
    expect(upload).to_have_attribute("data-state", "paused")
    expect(upload.locator(".upload-state")).to_have_text("Paused")
    paused_at = percent()
    upload.get_by_role("button", name="Resume").click()
    expect(upload).to_have_attribute("data-state", "uploading")
    page.wait_for_function(
        "p => document.querySelector('li.upload progress')?.value >= p", arg=paused_at + 10
    )
    upload.get_by_role("button", name="Pause").click()
    expect(upload).to_have_attribute("data-state", "paused")
    second_pause = percent()
    assert 5 <= paused_at < second_pause < 100

    # and the page is reloaded, and the same file chosen again
    page.reload()
    expect(page.locator("#unfinished-uploads")).to_contain_text("1002_tray_bottom.STL")
    cdp.send("Network.emulateNetworkConditions", {**slow, "uploadThroughput": -1})
    tus_calls: list[str] = []
    page.on(
        "request",
        lambda r: tus_calls.append(r.method) if "/api/v1/uploads/" in r.url else None,
    )
    page.get_by_label("Choose a file to upload").set_input_files(str(LARGER_PART))

    # Then it continues from where the server stopped, and finishes once
    upload = page.locator("li.upload")
    expect(upload).to_have_attribute("data-resumed", "true")
    expect(upload).to_have_attribute("data-state", "done")
    expect(page.locator("#unfinished-uploads")).to_be_hidden()
    expect(page.locator("#file-list li")).to_have_count(1)
    expect(page.locator("#file-list li")).to_contain_text("1002_tray_bottom.STL")
    expect(page.locator("#file-list li")).to_contain_text("version 1")
    assert "POST" not in tus_calls  # no new upload: HEAD for the offset, then PATCHes from it
    assert tus_calls[0] == "HEAD"
    assert "PATCH" in tus_calls


def test_folders_tags_versions_rollback_and_share_links_by_keyboard(
    hub_server: HubServer, page: Page
) -> None:
    # Given a customer with a part in the portal
    _customer(hub_server, "emmy@example.com")
    checks = PageChecks(page)
    sign_in(page, "emmy@example.com", PASSWORD)
    page.get_by_role("link", name="Files").click()

    def tab_to(selector: str) -> None:
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    # When a folder is made by keyboard and the part uploaded into it
    tab_to("input[name=folder_name]")
    page.keyboard.type("Brackets")
    page.keyboard.press("Enter")
    page.locator("#folder-tree").get_by_role("link", name="Brackets").click()
    expect(page.get_by_role("heading", name="Files in Brackets")).to_be_visible()
    page.get_by_label("Choose a file to upload").set_input_files(str(SMALL_PART))
    expect(page.locator("li.upload")).to_have_attribute("data-state", "done")
    page.locator("li.upload").get_by_role("link", name="Open angle_block.STL").click()

    # and tagged, given a second version, rolled back and shared, all by keyboard
    tab_to("#tag-add")
    page.keyboard.type("bracket")
    page.keyboard.press("Enter")
    expect(page.locator("#file-tags")).to_contain_text("bracket")
    page.get_by_label("Choose the new version's file").set_input_files(str(LARGER_PART))
    expect(page.locator("#versions li")).to_have_count(2)
    restore = page.get_by_role("button", name="Restore version 1")
    restore.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#versions li")).to_have_count(3)
    expect(page.locator("#versions li[data-version='3']")).to_contain_text(
        "restored from version 1"
    )
    # (the restored version gets its own preview: wait for it, the page's layout settles)
    expect(page.locator("#preview[data-version='3'][data-mode]")).to_have_count(1, timeout=60_000)
    tab_to("input[name=share_password]")
    page.keyboard.type("open-sesame-42")
    tab_to("#share-limit")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    expect(page.locator("#share-url")).to_have_value(re.compile("/s/"))
    share = page.locator("#shares li[data-state='active']")
    expect(share).to_contain_text("password")
    expect(share).to_contain_text("0 of 2 downloads")
    checks.check("file page with versions and a share link")
    share.get_by_role("button", name="Access log").click()
    expect(share).to_contain_text("Nobody has used this link yet.")
    share.get_by_role("button", name="Revoke").click()
    expect(page.locator("#shares li[data-state='revoked']")).to_have_count(1)

    # Then search and the tag find it
    page.get_by_role("link", name="← All files").click()
    page.get_by_label("Search files").fill("angle")
    page.get_by_label("Search files").press("Enter")
    expect(page.locator("#file-list li")).to_have_count(1)
    page.locator("#tag-cloud").get_by_role("link", name="#bracket").click()
    expect(page.get_by_role("heading", name="Tagged #bracket")).to_be_visible()
    expect(page.locator("#file-list li")).to_contain_text("angle_block.STL")
    checks.check("files, tagged")


def test_shop_cart_checkout_up_to_payment_and_orders(hub_server: HubServer, page: Page) -> None:
    # Given a product in the catalog (made by staff) and a customer
    staff_token = hub_server.api(
        "POST",
        "/auth/login",
        {"email": hub_server.staff_email, "password": hub_server.staff_password},
        address="198.51.100.200",
    )["access_token"]
    hub_server.api(
        "POST",
        "/products",
        {
            "slug": "design-review",
            "name": "Design review",
            "description": "An engineer reviews one part.",
            "kind": "service",
            "variants": [{"sku": "DR-1", "price_amount": 12000, "currency": "EUR"}],
        },
        staff_token,
    )
    _customer(hub_server, "sophie@example.com")
    checks = PageChecks(page)
    sign_in(page, "sophie@example.com", PASSWORD)

    # When the customer adds it to the cart twice and checks out
    page.get_by_role("link", name="Shop").click()
    page.get_by_role("button", name="Add to cart Design review DR-1").click()
    expect(page.locator("#cart-subtotal")).to_contain_text("120")
    page.get_by_role("button", name="Add to cart Design review DR-1").click()
    expect(page.get_by_label("Quantity of Design review")).to_have_value("2")
    checks.check("shop with a cart")
    page.get_by_role("button", name="Continue to payment").click()

    # Then the payment step says card payments are not configured here, and the cart is kept
    expect(page.locator("#payment-step")).to_contain_text("not configured")
    expect(page.get_by_label("Quantity of Design review")).to_have_value("2")
    page.get_by_role("link", name="Orders").click()
    expect(page.locator("#order-list")).to_contain_text("No orders yet")
    checks.check("orders")
