"""Browser tests: a real `ideinstein serve` (embedded mode) per test module, and Debian's
Chromium driven by Playwright. One browser per module; each test opens its own contexts.

Waits are on selectors and events, never on the clock. axe-core (from web/node_modules) is
added to every page as an init script, which the page's CSP does not apply to.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from api.identity.accounts import create_superuser
from core.settings import Settings
from db.connection import open_database
from tests.browser.webbuild import ROOT, WEB, ensure_web_built
from tests.conftest import _run_aside as run_aside
from tests.s3 import free_port

CHROMIUM = Path("/usr/bin/chromium")
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
STAFF_PASSWORD = "staff-Correct-Horse-9!"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@dataclass
class HubServer:
    """One `ideinstein serve` process (embedded mode), which a test may stop and start again."""

    url: str
    data_dir: Path
    staff_email: str
    staff_password: str
    workdir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.workdir / "serve.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--no-migrate"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        _wait_ready(self.url, self.process, log)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        found = []
        for path in sorted(self.outbox.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address in str(message["To"]):
                found.append(message)
        return found

    def link_in_mail(self, address: str, page: str) -> str:
        """The newest link to `page` (verify-email, reset-password) mailed to `address`,
        waiting for the mail to land in the outbox (it may go out from a queue)."""
        deadline = time.monotonic() + 15
        while True:
            for message in reversed(self.mails_to(address)):
                part = message.get_body(preferencelist=("plain",))
                text = part.get_content() if part is not None else ""
                match = re.search(rf"{re.escape(self.url)}/{page}\?token=\S+", text)
                if match:
                    return match.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {page} mail to {address} in {self.outbox}")
            time.sleep(0.1)  # a file in a directory: nothing to wait on but the clock

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        address: str = "203.0.113.7",
    ) -> Any:
        """A JSON call to the API from the test itself (setup, not what is being tested), as
        a client at `address` (each address has its own rate-limit budget)."""
        headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.url}/api/v1{path}", data=data, headers=headers, method=method
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(overrides)
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)  # starting up: nothing to wait on but the clock
    raise AssertionError(f"serve did not get ready:\n{log.read_text()}")


@pytest.fixture(scope="module")
def hub_env() -> dict[str, str]:
    """Extra settings for the module's server (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def hub_server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, hub_env: dict[str, str]
) -> Iterator[HubServer]:
    """`ideinstein serve` in embedded mode on a migrated database (a copy of the session's
    template: migrating takes seconds), with a super admin made by `createsuperuser`'s
    service function."""
    ensure_web_built()
    workdir = tmp_path_factory.mktemp("hub")
    data_dir = workdir / "var"
    data_dir.mkdir()
    database = data_dir / "ideinstein.db"
    shutil.copyfile(sqlite_template, database)
    staff_email = "staff@example.com"

    async def make_staff() -> None:
        async with open_database(f"sqlite://{database}"):
            await create_superuser(email=staff_email, password=STAFF_PASSWORD)

    run_aside(make_staff)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _clean_env(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        PUBLIC_URL=url,
        LOG_FORMAT="json",
        PRESENCE_GRACE_SECONDS="0.5",
        TRUSTED_PROXIES="127.0.0.1,::1",
        **hub_env,
    )
    server = HubServer(
        url=url,
        data_dir=data_dir,
        staff_email=staff_email,
        staff_password=STAFF_PASSWORD,
        workdir=workdir,
        env=env,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file() or shutil.which("chromium") is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: a missing browser is a failure)")
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


_addresses = itertools.count(1)


def new_context(browser: Browser, server: HubServer, **options: Any) -> BrowserContext:
    """A browser context that looks to the hub like a visitor of its own address (through the
    trusted proxy header), so each visitor has its own rate-limit budget, as in real life."""
    n = next(_addresses)
    address = f"10.77.{n // 250}.{n % 250 + 1}"
    context = browser.new_context(
        base_url=server.url, extra_http_headers={"X-Forwarded-For": address}, **options
    )
    context.set_default_timeout(10_000)
    context.add_init_script(path=str(AXE))
    return context


def serious_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations of impact serious or critical, one line each."""
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:5])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Page, name: str) -> Path:
    """Take the page's picture: into docs/screenshots (the README's) when UPDATE_SCREENSHOTS=1,
    else into a temporary folder, so a test run leaves the checkout clean."""
    folder = (
        SCREENSHOTS
        if os.environ.get("UPDATE_SCREENSHOTS") == "1"
        else Path(tempfile.gettempdir()) / "ideinstein-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, email_address: str, password: str, *, path: str = "/sign-in") -> None:
    page.goto(path)
    page.get_by_label("Email").fill(email_address)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
