"""The console's event subscriptions, in a real Chromium against a real server with real webhook
receivers: what it shows of each subscription (never its secret) and of its deliveries (delivered,
retrying with the next attempt, dead letters with the reason and the command that redelivers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenant_access.domain.event_subscriptions import metrics_label
from tests.conftest import API, SERVICE_BODY, SUBSCRIPTION
from tests.console.conftest import ARTIFACTS, RESOURCE_GROUP, Api, Browser
from tests.console.test_browser import expect, sign_in
from tests.events.receiver import Behaviour, Receiver
from tests.serverproc import ServerProcess

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Loopback receivers allowed; a failed delivery's next attempt is minutes away."""
    made = ServerProcess(tmp_path_factory.mktemp("console-events"),
                         ["--allow-private-event-destinations", "--event-retry-delay", "600"]).start()
    yield made
    made.stop()


def _deliveries(api: Api, name: str, sub: str) -> dict[str, Any]:
    answer = api.call("GET", name, f"/eventSubscriptions/{sub}/deliveries")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def _wait(api: Api, name: str, sub: str, field: str, value: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _deliveries(api, name, sub)
        if found[field] == value:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{sub}: {field} never reached {value}: {found}")


def _ms(text: str) -> str:
    """An API time as the browser's Date.toISOString() writes it (milliseconds)."""
    return text[:23] + "Z"


def test_subscriptions_and_their_deliveries(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service("events")
    with Receiver() as good, Receiver(Behaviour(status=500)) as flaky, Receiver(Behaviour(status=400)) as broken:
        for sub, receiver, body in (
                ("good", good, {"secret": SECRET}),
                ("flaky", flaky, {}),
                ("broken", broken, {"eventTypes": ["Microsoft.ApiManagement.TenantAccess.KeyRegenerated"],
                                    "eventDeliverySchema": "EventGridSchema"})):
            made = api.call("PUT", name, f"/eventSubscriptions/{sub}", json={"destination": receiver.url, **body})
            if sub == "broken":  # an Event Grid destination must answer the validation event first
                assert made.status_code == 400
                broken.behaviour.status, broken.behaviour.validates = 400, True
                made = api.call("PUT", name, f"/eventSubscriptions/{sub}",
                                json={"destination": receiver.url, **body})
            assert made.status_code == 201, made.text
        assert api.call("POST", name, "/tenant/access/regeneratePrimaryKey").status_code == 200
        _wait(api, name, "good", "delivered", 1)
        retrying = _wait(api, name, "flaky", "retrying", 1)
        dead = _wait(api, name, "broken", "dead_lettered", 1)

        sign_in(page, server, name)
        events = page.locator("#events")
        expect(events.locator("h3")).to_have_text("Event subscriptions")
        shown = events.locator(".subscription")
        expect(shown).to_have_count(3)
        expect(shown.locator("h4")).to_have_text(["broken", "flaky", "good"])

        ok = events.locator('.subscription[data-subscription="good"]')
        expect(ok.locator('[data-role="destination"]')).to_have_text(good.url)
        expect(ok.locator('[data-role="filter"]')).to_have_text("all event types")
        expect(ok.locator('[data-role="schema"]')).to_have_text("CloudEventSchemaV1_0")
        expect(ok.locator('[data-role="secret"]')).to_have_text("set (never shown)")
        expect(ok.locator('[data-role="signed"]')).to_have_text("Signed")
        expect(ok.locator('[data-role="metrics-label"]')).to_have_text(
            metrics_label(f"{api.path(name)}/eventSubscriptions/good"))
        expect(ok.locator('[data-role="delivered"] .stat-value')).to_have_text("1")
        expect(ok.locator('[data-role="pending"] .stat-value')).to_have_text("0")
        expect(ok.locator('[data-role="oldest"] .stat-value')).to_have_text("none")

        waiting = events.locator('.subscription[data-subscription="flaky"]')
        expect(waiting.locator('[data-role="secret"]')).to_have_text("not set")
        expect(waiting.locator('[data-role="retrying"] .stat-value')).to_have_text("1")
        expect(waiting.locator('[data-role="dead"] .stat-value')).to_have_text("0")
        expect(waiting.locator('[data-role="oldest"] .stat-value')).not_to_have_text("none")
        [retry] = retrying["retries"]
        item = waiting.locator(f'[data-role="retries"] [data-event="{retry["event_id"]}"]')
        expect(item.locator('[data-role="next-attempt"]')).to_have_attribute("datetime", _ms(retry["next_attempt_at"]))
        expect(item).to_contain_text("KeyRegenerated")
        expect(item).to_contain_text("attempt 1 failed")
        expect(item).to_contain_text("HTTP 500")

        failed = events.locator('.subscription[data-subscription="broken"]')
        expect(failed.locator('[data-role="filter"]')).to_have_text("KeyRegenerated")
        expect(failed.locator('[data-role="schema"]')).to_have_text("EventGridSchema")
        expect(failed.locator('[data-role="dead"] .stat-value')).to_have_text("1")
        [letter] = dead["dead_letters"]
        row = failed.locator(f'[data-role="dead-letters"] [data-event="{letter["event_id"]}"]')
        expect(row.locator('[data-role="reason"]')).to_have_text("HTTP 400 (permanent)")
        expect(failed.locator('[data-role="redeliver"]')).to_have_text(dead["redeliver_command"])
        expect(waiting.locator('[data-role="redeliver"]')).to_have_count(0)
        assert SECRET not in page.content()
        ARTIFACTS.mkdir(exist_ok=True)
        events.screenshot(path=str(ARTIFACTS / "console-events.png"))

        # A later look: Refresh reads the deliveries again (the good one delivers a second event).
        assert api.call("POST", name, "/tenant/access/regenerateSecondaryKey").status_code == 200
        _wait(api, name, "good", "delivered", 2)
        events.get_by_role("button", name="Refresh").click()
        expect(ok.locator('[data-role="delivered"] .stat-value')).to_have_text("2")


def test_a_reader_is_told_subscriptions_need_an_owner(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service("events")
    sign_in(page, server, name, token=server.token(role="reader", sub="console-reader"))
    expect(page.locator("#events-note")).to_have_text("Event subscriptions need an owner token.")
    expect(page.locator("#events .subscription")).to_have_count(0)


def test_no_subscription_says_how_to_make_one(browser: Browser, server: ServerProcess, api: Api) -> None:
    page = browser.page
    name = api.service("events")
    sign_in(page, server, name)
    expect(page.locator("#events-note")).to_contain_text("No event subscriptions.")


def test_the_azure_wire_format(browser: Browser, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "azure", ["--api-style", "azure", "--allow-private-event-destinations",
                                                "--event-retry-delay", "600"]).start()
    try:
        path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ApiManagement" \
               "/service/azure-events"
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http, \
                Receiver(Behaviour(status=400)) as broken:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            made = http.put(f"{path}/eventSubscriptions/hook?{API}", json={"properties": {
                "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": broken.url}},
                "secret": SECRET}})
            assert made.status_code == 201, made.text
            assert http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").status_code == 204
            deadline = time.monotonic() + 30
            owed: dict[str, Any] = {}
            while time.monotonic() < deadline:
                owed = http.get(f"{path}/eventSubscriptions/hook/deliveries?{API}").json()["properties"]
                if owed["deadLettered"] == 1:
                    break
                time.sleep(0.1)
            assert owed["deadLettered"] == 1, owed
            sign_in(browser.page, server, "azure-events")
            shown = browser.page.locator('#events .subscription[data-subscription="hook"]')
            expect(shown.locator('[data-role="destination"]')).to_have_text(broken.url)
            expect(shown.locator('[data-role="secret"]')).to_have_text("set (never shown)")
            expect(shown.locator('[data-role="metrics-label"]')).to_have_text(made.json()["properties"]["metricsLabel"])
            expect(shown.locator('[data-role="dead"] .stat-value')).to_have_text("1")
            expect(shown.locator('[data-role="reason"]')).to_have_text("HTTP 400 (permanent)")
            expect(shown.locator('[data-role="redeliver"]')).to_have_text(owed["redeliverCommand"])
            assert SECRET not in browser.page.content()
    finally:
        server.stop()
