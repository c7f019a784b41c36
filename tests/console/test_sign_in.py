"""Signing in to the console as a newcomer does (issue 17): a garbage token is refused at sign-in
with the server's reason, and the demo token leads to boxes filled with real values and services on
the first click. Real Chromium, real server started with ``--demo``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenant_access.security.tokens import issue_token
from tests.backends import Backend
from tests.console.conftest import Browser
from tests.serverproc import ServerProcess

DEMO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    made = ServerProcess(tmp_path_factory.mktemp("console-demo"), ["--demo"]).start()
    yield made
    made.stop()


def demo_token(server: ServerProcess) -> str:
    """The token ``serve --demo`` printed, as a person copies it."""
    found = re.search(r"export TOKEN=(\S+)", server.log())
    assert found is not None, server.log()
    return found[1]


def sign_in(browser: Browser, server: ServerProcess, token: str) -> None:
    page = browser.page
    page.goto(f"{server.url}/console")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in", exact=True).click()


@pytest.mark.parametrize(("token", "reason"), [
    ("this is not a token", "malformed"),
    (issue_token(b"k" * 32, "someone", "owner", "/", 600), "signed with a key this server does not have"),
], ids=["garbage", "other data dir"])
def test_a_bad_token_is_refused_at_sign_in_with_the_reason(browser: Browser, demo: ServerProcess, token: str,
                                                           reason: str) -> None:
    sign_in(browser, demo, token)
    error = browser.page.locator("#signin-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The server refused this token")
    expect(error).to_contain_text(reason)
    expect(browser.page.locator("#workspace")).to_be_hidden()


def test_the_demo_token_fills_the_boxes_and_loads_services_on_the_first_click(
        browser: Browser, demo: ServerProcess) -> None:
    page = browser.page
    sign_in(browser, demo, demo_token(demo))
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.get_by_label("Subscription")).to_have_value(DEMO_SUBSCRIPTION)
    expect(page.get_by_label("Resource group")).to_have_value("demo-rg")
    page.get_by_role("button", name="Load services").click()
    expect(page.locator(".service-item", has_text="demo-apim")).to_be_visible()
    expect(page.locator("#services-empty")).not_to_contain_text("Enter a subscription")


def test_the_sign_in_check_names_only_what_the_token_may_see(db_backend: Backend, tmp_path: Path) -> None:
    """Over both stores: the places come from the store's list of every service."""
    demo = db_backend.server(tmp_path / "data", ["--demo"]).start()
    try:
        _check_places(demo)
    finally:
        demo.stop()
        demo.database.drop()


def _check_places(demo: ServerProcess) -> None:
    whole = httpx.get(f"{demo.url}/console/session", headers=demo.auth())
    assert whole.status_code == 200
    assert {"subscription": DEMO_SUBSCRIPTION, "resource_group": "demo-rg"} in whole.json()["resource_groups"]
    elsewhere = httpx.get(f"{demo.url}/console/session",
                          headers=demo.auth(scope="/subscriptions/11111111-1111-1111-1111-111111111111"))
    assert elsewhere.status_code == 200 and elsewhere.json()["resource_groups"] == []
    refused = httpx.get(f"{demo.url}/console/session")
    assert refused.status_code == 401 and refused.json()["success"] is False
