"""The console in a real browser against a real server: what a person clicks, checked through the API."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tenant_access.security.sas import make_sas, sign
from tenant_access.security.tokens import issue_token, load_or_create_signing_key
from tests.conftest import API, SERVICE_BODY, SUBSCRIPTION
from tests.console.conftest import ARTIFACTS, RESOURCE_GROUP, Api, Browser
from tests.serverproc import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

MASK = "\u2022" * 40


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Page, server: ServerProcess, service: str | None = None, token: str | None = None) -> None:
    """Open the console (on a service's page when named) and paste a token, as a person would."""
    target = f"#/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/service/{service}" if service else ""
    page.goto(f"{server.url}/console{target}")
    page.get_by_label("Token").fill(token if token is not None else server.token(sub="console-user"))
    page.get_by_role("button", name="Sign in", exact=True).click()
    if service:
        expect(config_card(page, "access")).not_to_have_class(re.compile(r"\bloading\b"))
        expect(config_card(page, "gitAccess")).not_to_have_class(re.compile(r"\bloading\b"))


def config_card(page: Page, config: str) -> Locator:
    return page.locator(f'.config[data-config="{config}"]')


def key_row(page: Page, config: str, slot: str) -> Locator:
    return config_card(page, config).locator(f'.key[data-slot="{slot}"]')


def toast(page: Page, text: str) -> None:
    expect(page.locator(".toast", has_text=text)).to_be_visible()


def test_regenerate_the_secondary_key(browser: Browser, server: ServerProcess, api: Api) -> None:
    """The seed operation from the console: pick the service, regenerate, confirm; the API agrees."""
    page = browser.page
    name = api.service()
    before = api.secrets(name)
    page.goto(f"{server.url}/console")
    page.get_by_label("Token").fill(server.token(sub="console-user"))
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_label("Subscription").fill(SUBSCRIPTION)
    page.get_by_label("Resource group").fill(RESOURCE_GROUP)
    page.get_by_role("button", name="Load services").click()
    page.locator(".service-item", has_text=name).click()
    access = config_card(page, "access")
    secondary = key_row(page, "access", "secondary")
    expect(secondary.locator('[data-role="meta"]')).to_have_attribute(
        "title", f"key version {before['secondary_key_version_id']}")

    access.get_by_role("button", name="Regenerate secondary key").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Regenerate the secondary key of access?")
    dialog.get_by_role("button", name="Regenerate secondary key").click()
    toast(page, "The secondary key of access was regenerated.")
    expect(dialog).to_be_hidden()

    after = api.secrets(name)
    assert after["secondary_key"] != before["secondary_key"]
    assert after["secondary_key_version_id"] != before["secondary_key_version_id"]
    assert after["primary_key"] == before["primary_key"]  # the other key is untouched
    assert after["primary_key_version_id"] == before["primary_key_version_id"]
    expect(secondary.locator('[data-role="meta"]')).to_have_attribute(
        "title", f"key version {after['secondary_key_version_id']}")
    newest = access.locator(".timeline .event").first
    expect(newest.locator(".event-title")).to_have_text("Secondary key regenerated")
    expect(newest.locator(".event-versions")).to_have_attribute(
        "title", f"{before['secondary_key_version_id']} \u2192 {after['secondary_key_version_id']}")
    expect(newest.locator(".event-meta")).to_contain_text("by console-user, owner")

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".toast").first.wait_for(state="detached", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
    assert (ARTIFACTS / "console.png").stat().st_size > 10_000


def test_cancel_leaves_the_key_alone(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service()
    before = api.secrets(name)
    sign_in(page, server, name)
    config_card(page, "access").get_by_role("button", name="Regenerate primary key").click()
    page.locator("#confirm").get_by_role("button", name="Cancel").click()
    expect(page.locator("#confirm")).to_be_hidden()
    page.keyboard.press("Escape")
    assert api.secrets(name)["primary_key"] == before["primary_key"]
    assert [r for r in api.audit(name) if "regenerate" in r["operation"]] == []


def test_keys_stay_masked_until_shown_then_copy(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    name = api.service()
    sign_in(page, server, name)
    primary = key_row(page, "access", "primary")
    for config in ("access", "gitAccess"):
        for slot in ("primary", "secondary"):
            row = key_row(page, config, slot)
            expect(row.locator('[data-role="value"]')).to_have_value(MASK)
            expect(row.get_by_role("button", name=f"Copy {slot} key")).to_be_disabled()
    assert api.audit(name, "access.list_secrets") == []  # loading the page read no key

    primary.get_by_role("button", name="Show primary key").click()
    expect(primary.get_by_role("button", name="Hide primary key")).to_be_visible()
    reads = api.audit(name, "access.list_secrets")
    assert [(r["principal"], r["target"].rsplit("/", 1)[-1]) for r in reads] == [("console-user", "access")]
    keys = api.secrets(name)
    expect(primary.locator('[data-role="value"]')).to_have_value(keys["primary_key"])
    expect(key_row(page, "access", "secondary").locator('[data-role="value"]')).to_have_value(MASK)

    primary.get_by_role("button", name="Copy primary key").click()
    toast(page, "The primary key of access is on the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == keys["primary_key"]

    primary.get_by_role("button", name="Hide primary key").click()
    expect(primary.locator('[data-role="value"]')).to_have_value(MASK)
    expect(primary.get_by_role("button", name="Copy primary key")).to_be_disabled()
    assert keys["primary_key"] not in page.content()


def test_enable_and_disable_with_if_match(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service()
    sign_in(page, server, name)
    access = config_card(page, "access")
    state = access.locator('[data-role="state"]')
    expect(state).to_have_text("Disabled")  # as Azure creates it

    access.get_by_role("button", name="Enable access").click()
    toast(page, "access is enabled.")
    expect(state).to_have_text("Enabled")
    assert api.config(name).json()["data"]["enabled"] is True

    access.get_by_role("button", name="Disable access").click()
    page.locator("#confirm").get_by_role("button", name="Disable access").click()
    expect(state).to_have_text("Disabled")
    current = api.config(name)
    assert current.json()["data"]["enabled"] is False
    expect(access.locator('[data-role="etag"]')).to_have_text(current.json()["data"]["etag"])

    # Someone else enables it behind the console's back: the console's tag is stale, so its change is refused.
    assert api.call("PATCH", name, "/tenant/access", json={"properties": {"enabled": True}},
                    headers={"If-Match": "*"}).status_code == 200
    access.get_by_role("button", name="Enable access").click()
    toast(page, "was changed elsewhere since it was loaded")
    expect(state).to_have_text("Enabled")  # reloaded from the server
    assert api.config(name).json()["data"]["enabled"] is True
    git = config_card(page, "gitAccess")
    git.get_by_role("button", name="Disable gitAccess").click()
    page.locator("#confirm").get_by_role("button", name="Disable gitAccess").click()
    expect(git.locator('[data-role="state"]')).to_have_text("Disabled")
    assert api.config(name, "gitAccess").json()["data"]["enabled"] is False
    assert len(api.audit(name, "access.update")) == 4  # three on access, one on gitAccess


def test_shared_access_signature_equals_make_sas(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service()
    assert api.call("PATCH", name, "/tenant/access", json={"properties": {"enabled": True}},
                    headers={"If-Match": "*"}).status_code == 200
    sign_in(page, server, name)
    access = config_card(page, "access")
    access.get_by_label("Secret key").select_option("secondary")
    # Within the server's cap on how far ahead a signature may expire (30 days by default).
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(second=0, microsecond=0)
    access.get_by_label("Expiry (UTC)").fill(expiry.strftime("%Y-%m-%dT%H:%M"))
    access.get_by_role("button", name="Generate signature").click()
    output = access.locator('[data-role="sas-value"]')
    expect(output).not_to_have_value("")
    keys = api.secrets(name)
    assert output.input_value() == make_sas("integration", keys["secondary_key"], expiry)
    # The signature works: the server accepts it as a credential for this service.
    with httpx.Client(base_url=server.url, headers={"Authorization": output.input_value()}) as sas_client:
        assert sas_client.get(f"{api.path(name)}/tenant/access?{API}").status_code == 200
    # Keys shown are not needed: signing fetched the key for the moment only.
    expect(key_row(page, "access", "secondary").locator('[data-role="value"]')).to_have_value(MASK)

    access.get_by_label("Expiry (UTC)").fill("2001-01-01T00:00")
    access.get_by_role("button", name="Generate signature").click()
    toast(page, "The expiry must be in the future.")


@pytest.mark.parametrize(("uid", "key", "expiry"), [
    ("integration", "Y2FyZWZ1bGx5IGNob3NlbiBrZXkgb2YgZXhhY3RseSBlaWdodHktZWlnaHQgY2hhcmFjdGVycyEhISEhISEhIQ==",
     "2030-06-15T23:59:59.123Z"),
    ("integration", "!\"#$%'()*+,-./:;<>?@[\\]^_`{|}~ABCDEFGHIJKLMNOPQRSTUVWXYZ", "2026-01-01T00:00:00.000Z"),
    ("git", "k" * 256, "9999-12-31T23:59:59.999Z"),
    ("user-42", "clé non-ASCII: ü ß 東京 \U0001f511", "2024-02-29T12:00:00.001Z"),
])
def test_browser_signing_equals_python(browser: Browser, server: ServerProcess, uid: str, key: str,
                                       expiry: str) -> None:
    """sas.js and security/sas.py agree byte for byte, the key taken as UTF-8 text in both."""
    page = browser.page
    page.goto(f"{server.url}/console")  # a secure context (loopback), where WebCrypto exists
    made = page.evaluate("([uid, key, ex]) => TenantAccessSas.makeSas(uid, key, new Date(ex))", [uid, key, expiry])
    when = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    assert made == make_sas(uid, key, when)
    raw_ex = made.split("&ex=")[1].split("&")[0]
    assert len(raw_ex) == 28 and raw_ex.endswith("0000Z")
    assert made.rsplit("&sn=", 1)[1] == base64.b64encode(sign(uid, key, raw_ex)).decode()
    invalid = "() => { try { TenantAccessSas.formatExpiry(new Date('x')); } catch (e) { return e.name; } }"
    assert page.evaluate(invalid) == "TypeError"


def test_rotation_history_timeline(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service()
    for suffix in ("/tenant/access/regeneratePrimaryKey", "/tenant/access/regenerateSecondaryKey",
                   "/tenant/access/regenerateSecondaryKey", "/tenant/access/git/regenerateSecondaryKey"):
        assert api.call("POST", name, suffix).status_code == 200
        time.sleep(0.01)  # distinct times, so the expected order is unambiguous
    assert api.call("PATCH", name, "/tenant/access", json={"properties": {"enabled": True}},
                    headers={"If-Match": "*"}).status_code == 200
    time.sleep(0.01)
    api.secrets(name)
    time.sleep(0.01)
    reader = {"Authorization": f"Bearer {server.token(role='reader', sub='a-reader')}"}
    assert api.call("POST", name, "/tenant/access/regenerateSecondaryKey", headers=reader).status_code == 403
    records = {r["operation"]: r for r in api.audit(name) if r["outcome"] == "success"}

    sign_in(page, server, name)
    access = config_card(page, "access")
    events = access.locator(".timeline .event")
    expect(events).to_have_count(5)
    assert events.locator(".event-title").all_text_contents() == [
        "Enabled or disabled", "Secondary key regenerated", "Secondary key regenerated", "Primary key regenerated",
        "Service created, first keys issued",
    ]
    primary = records["access.regenerate_primary_key"]
    expect(events.nth(3).locator(".event-versions")).to_have_attribute(
        "title", f"{primary['old_version_id']} \u2192 {primary['new_version_id']}")
    expect(events.nth(3).locator("time")).to_have_attribute(
        "datetime", dt.datetime.fromisoformat(primary["created_at"]).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"))
    git_events = config_card(page, "gitAccess").locator(".timeline .event .event-title")
    expect(git_events).to_have_text(["Secondary key regenerated", "Service created, first keys issued"])

    access.get_by_label("Key reads and refusals").check()
    expect(events).to_have_count(7)
    titles = events.locator(".event-title").all_text_contents()
    assert titles[:2] == ["Refused (403): secondary key regenerated", "Keys read"]
    expect(access.locator(".event-denied .event-meta")).to_contain_text("by a-reader, reader")


def test_a_reader_sees_what_it_may_not_do(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service()
    sign_in(page, server, name, token=server.token(role="reader", sub="a-reader"))
    expect(page.locator("#who")).to_contain_text("a-reader \u00b7 reader")
    key_row(page, "access", "primary").get_by_role("button", name="Show primary key").click()
    toast(page, "Could not read the primary key")
    expect(key_row(page, "access", "primary").locator('[data-role="value"]')).to_have_value(MASK)
    expect(config_card(page, "access").locator('[data-role="history-note"]')).to_contain_text("needs an owner token")


def test_refused_and_expired_tokens(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service()
    sign_in(page, server, None, token="not-a-token")  # refused at sign-in now (tests/console/test_sign_in.py)
    expect(page.locator("#signin-error")).to_contain_text("The server refused this token")
    expect(page.locator("#workspace")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('tenant-access.console.token')") is None

    expired = issue_token(load_or_create_signing_key(server.data_dir, create=False), "old", "owner", "/", 60,
                          now=time.time() - 3600, iss=server.issuer)
    page.get_by_label("Token").fill(expired)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-error")).to_contain_text("This token expired")

    page.get_by_label("Token").fill(server.token(sub="console-user"))
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("button", name="Load services").click()
    expect(page.locator(".service-item", has_text=name)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tenant-access.console.token')") is None


def test_the_console_speaks_the_azure_wire_format(browser: Browser, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "azure", ["--api-style", "azure"]).start()
    try:
        name = "azure-console"
        path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ApiManagement" \
               f"/service/{name}"
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            page = browser.page
            sign_in(page, server, name)
            expect(page.locator("#server-mode")).to_have_text("Azure wire format")
            access = config_card(page, "access")
            expect(access.locator('[data-role="principal"]')).to_have_text("integration")
            access.get_by_role("button", name="Show secondary key").click()
            before = http.post(f"{path}/tenant/access/listSecrets?{API}").json()
            expect(key_row(page, "access", "secondary").locator('[data-role="value"]')).to_have_value(
                before["secondaryKey"])
            access.get_by_role("button", name="Regenerate secondary key").click()
            page.locator("#confirm").get_by_role("button", name="Regenerate secondary key").click()
            toast(page, "The secondary key of access was regenerated.")
            after = http.post(f"{path}/tenant/access/listSecrets?{API}").json()
            assert after["secondaryKey"] != before["secondaryKey"]
            assert after["primaryKey"] == before["primaryKey"]
            access.get_by_role("button", name="Enable access").click()
            expect(access.locator('[data-role="state"]')).to_have_text("Enabled")
            assert http.get(f"{path}/tenant/access?{API}").json()["properties"]["enabled"] is True
            expect(access.locator(".timeline .event .event-title").first).to_have_text("Enabled or disabled")
    finally:
        server.stop()


def test_each_key_shows_when_it_was_last_used(browser: Browser, server: ServerProcess, api: Api) -> None:
    """Key usage per slot (issue 14): a key that just signed a request reads "last used this minute",
    the other "never used"."""
    name = api.service()
    enabled = api.call("PATCH", name, "/tenant/access", json={"properties": {"enabled": True}},
                       headers={"If-Match": "*"})
    assert enabled.status_code == 200, enabled.text
    keys = api.secrets(name)
    sas = make_sas("integration", keys["primary_key"], dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert httpx.get(f"{server.url}{api.path(name)}?{API}", headers={"Authorization": sas}).status_code == 200
    sign_in(browser.page, server, name)
    expect(key_row(browser.page, "access", "primary").locator('[data-role="meta"]')).to_contain_text(
        "last used this minute")
    expect(key_row(browser.page, "access", "secondary").locator('[data-role="meta"]')).to_contain_text("never used")
