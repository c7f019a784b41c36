"""A real Chromium, driven by Playwright, against a real server process.

Chromium comes from the system (Debian's ``chromium`` package), never from ``playwright install``,
which downloads its own browser build and cannot run where downloads are blocked. Without it the
browser tests are skipped with a reason that says how to install it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, SUBSCRIPTION
from tests.serverproc import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page, Playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RESOURCE_GROUP = "console-rg"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW_TO_INSTALL = ("install it with `apt-get install chromium` (Debian/Ubuntu; as root), or point "
                  "TENANT_ACCESS_CHROMIUM at a Chromium or Chrome binary")


def chromium_path() -> str | None:
    """``TENANT_ACCESS_CHROMIUM`` when set (and only it), else the usual names on ``PATH``."""
    chosen = os.environ.get("TENANT_ACCESS_CHROMIUM")
    candidates = (chosen,) if chosen else (shutil.which("chromium"), "/usr/bin/chromium",
                                           shutil.which("chromium-browser"), shutil.which("google-chrome"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped on purpose: while Playwright's sync driver runs, its event loop counts as running
    on this thread, and every later test that calls ``asyncio.run`` would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the console browser tests need Playwright for Python: pip install -e '.[test]'")
    if chromium_path() is None:
        pytest.skip(f"the console browser tests need Chromium, which is not installed: {HOW_TO_INSTALL}")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The default server: seed wire format, strict authentication."""
    made = ServerProcess(tmp_path_factory.mktemp("console")).start()
    yield made
    made.stop()


@dataclass
class Browser:
    """One page in a Chromium with a profile of its own, and what went wrong in it."""

    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[Browser]:
    path = chromium_path()
    assert path is not None
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=path, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1440, "height": 900}, locale="en-GB", timezone_id="UTC",
    )
    context.set_default_timeout(15_000)
    page = context.pages[0] if context.pages else context.new_page()
    made = Browser(page)
    page.on("pageerror", lambda error: made.errors.append(f"uncaught: {error}"))

    def console_message(message: Any) -> None:
        text = message.text
        if message.type == "error" and "Failed to load resource" not in text:
            made.errors.append(f"console: {text}")

    page.on("console", console_message)
    try:
        yield made
    finally:
        context.close()
    assert made.errors == [], made.errors  # no script error and no Content-Security-Policy violation


class Api:
    """The test's own view of the server, over plain HTTP with an owner token."""

    def __init__(self, server: ServerProcess) -> None:
        self.client = httpx.Client(base_url=server.url, headers=server.auth(), timeout=10)

    def service(self, prefix: str = "console") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        response = self.client.put(f"{self.path(name)}?{API}", json=SERVICE_BODY)
        assert response.status_code == 201, response.text
        return name

    @staticmethod
    def path(name: str) -> str:
        return (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ApiManagement"
                f"/service/{name}")

    def call(self, method: str, name: str, suffix: str = "", **kwargs: Any) -> httpx.Response:
        return self.client.request(method, f"{self.path(name)}{suffix}?{API}", **kwargs)

    def secrets(self, name: str, config: str = "access") -> dict[str, Any]:
        response = self.call("POST", name, f"/tenant/{config}/listSecrets")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def config(self, name: str, config: str = "access") -> httpx.Response:
        return self.call("GET", name, f"/tenant/{config}")

    def audit(self, name: str, operation: str | None = None) -> list[dict[str, Any]]:
        query = {"api-version": API.split("=", 1)[1], **({"operation": operation} if operation else {})}
        response = self.client.get(f"{self.path(name)}/auditEvents", params=query)
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["data"]
        return records


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    made = Api(server)
    yield made
    made.client.close()
