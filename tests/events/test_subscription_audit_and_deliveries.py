"""Subscription changes in the audit trail, and ``.../deliveries`` (what the console shows), on a
real server over both stores and both wire styles, with real receivers that accept, fail for now
(500: retried later) and fail for good (400: dead-lettered)."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenant_access.domain.event_subscriptions import metrics_label
from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path
from tests.events.receiver import Behaviour, Receiver
from tests.http.test_openapi import DOCUMENTED, _validate

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PUT_OP = "events.subscriptions.create_or_update"
DELETE_OP = "events.subscriptions.delete"
AZURE = "api-version=2022-08-01"
TEMPLATE = DOCUMENTED + "/service/{serviceName}/eventSubscriptions/{eventSubscriptionName}"


@pytest.fixture
def server(db_backend: Backend, tmp_path: Path) -> Iterator[DbServer]:
    # A long retry delay: a failed delivery stays "retrying" with its next attempt minutes away.
    made = db_backend.server(tmp_path / "data", ["--allow-private-event-destinations",
                                                 "--event-retry-delay", "600"]).start()
    yield made
    made.stop()


def _client(server: DbServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.auth(), timeout=30)


def _audit(http: httpx.Client, svc: str, operation: str) -> list[dict[str, Any]]:
    answer = http.get(f"{svc}/auditEvents", params={"api-version": API.split("=")[1], "operation": operation})
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["data"]
    return sorted(records, key=lambda r: str(r["id"]))


def _until(check: Callable[[], bool], server: DbServer, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out; the server's log ends:\n{server.log()[-3000:]}")


def test_subscription_changes_are_audited_with_actor_action_and_target(server: DbServer) -> None:
    svc = service_path("evaudit1")
    with _client(server) as http, Receiver() as receiver, Receiver(Behaviour(answers_options=False)) as refusing:
        assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        destination = receiver.url + "?code=query-credential"
        made = http.put(f"{svc}/eventSubscriptions/hook?{API}", json={
            "destination": destination, "eventTypes": ["Microsoft.ApiManagement.TenantAccess.KeyRegenerated"],
            "secret": SECRET})
        assert made.status_code == 201, made.text
        replaced = http.put(f"{svc}/eventSubscriptions/hook?{API}", json={"destination": receiver.url})
        assert replaced.status_code == 200, replaced.text
        refused = http.put(f"{svc}/eventSubscriptions/other?{API}", json={"destination": refusing.url})
        assert refused.status_code == 400  # the handshake failed: nothing stored, nothing recorded

        records = _audit(http, svc, PUT_OP)
        assert [(r["status"], r["outcome"]) for r in records] == [(201, "success"), (200, "success")]
        target = f"{svc}/eventSubscriptions/hook"
        for record in records:
            assert record["target"] == target
            assert record["principal"] == "tests"
            assert record["role"] == "owner"
            assert record["request_id"]
        created, replaced_record = records
        assert created["detail"] == (f"destination={receiver.url}?\u2026; eventTypes=KeyRegenerated; "
                                     "schema=CloudEventSchemaV1_0; signed=yes")
        assert replaced_record["detail"].endswith("eventTypes=all; schema=CloudEventSchemaV1_0; signed=no")
        listed = http.get(f"{svc}/auditEvents?{API}").text
        assert SECRET not in listed
        assert "query-credential" not in listed

        assert http.delete(f"{svc}/eventSubscriptions/hook?{API}").status_code == 200
        assert http.delete(f"{svc}/eventSubscriptions/hook?{API}").status_code == 404  # nothing left
        deleted = _audit(http, svc, DELETE_OP)
        assert [(r["target"], r["status"], r["principal"]) for r in deleted] == [(target, 200, "tests")]


def _deliveries(http: httpx.Client, svc: str, name: str) -> dict[str, Any]:
    answer = http.get(f"{svc}/eventSubscriptions/{name}/deliveries?{API}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_deliveries_show_delivered_retrying_and_dead_letters(server: DbServer) -> None:
    svc = service_path("evdeliv1")
    with _client(server) as http, Receiver() as good, Receiver(Behaviour(status=500)) as flaky, \
            Receiver(Behaviour(status=400)) as broken:
        assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        for name, receiver in (("good", good), ("flaky", flaky), ("broken", broken)):
            made = http.put(f"{svc}/eventSubscriptions/{name}?{API}", json={"destination": receiver.url,
                                                                            "secret": SECRET})
            assert made.status_code == 201, made.text
        empty = _deliveries(http, svc, "good")
        assert empty["pending"] == empty["retrying"] == empty["dead_lettered"] == 0
        assert empty["oldest_undelivered_at"] is None and empty["redeliver_command"] is None
        assert empty["delivered"] == 0

        before = _dt.datetime.now(_dt.UTC)
        version = http.post(f"{svc}/tenant/access/regeneratePrimaryKey?{API}").json()["data"]["id"]
        _until(lambda: _deliveries(http, svc, "good")["delivered"] == 1, server)
        _until(lambda: _deliveries(http, svc, "flaky")["retrying"] == 1, server)
        _until(lambda: _deliveries(http, svc, "broken")["dead_lettered"] == 1, server)

        good_state = _deliveries(http, svc, "good")
        assert good_state["pending"] == 0 and good_state["metrics_label"] == metrics_label(
            f"{svc}/eventSubscriptions/good")

        flaky_state = _deliveries(http, svc, "flaky")
        assert flaky_state["pending"] == 1 and flaky_state["dead_lettered"] == 0
        [retry] = flaky_state["retries"]
        assert retry["event_type"] == "Microsoft.ApiManagement.TenantAccess.KeyRegenerated"
        assert retry["attempts"] == 1 and retry["last_error"] == "HTTP 500"
        next_at = _dt.datetime.fromisoformat(retry["next_attempt_at"])
        assert next_at > before + _dt.timedelta(minutes=5)  # the retry delay of 600 s, with jitter
        oldest = _dt.datetime.fromisoformat(flaky_state["oldest_undelivered_at"])
        assert before - _dt.timedelta(seconds=1) <= oldest <= _dt.datetime.now(_dt.UTC)
        assert flaky_state["oldest_undelivered_age_seconds"] >= 0

        broken_state = _deliveries(http, svc, "broken")
        assert broken_state["pending"] == 0 and broken_state["retries"] == []
        [dead] = broken_state["dead_letters"]
        assert dead["reason"] == "HTTP 400 (permanent)"
        assert dead["attempts"] == 1
        assert broken_state["redeliver_command"] == f"tenant-access events redeliver {dead['event_id']}"
        assert version not in str(broken_state)  # ids of events, never of keys or their versions
        assert SECRET not in http.get(f"{svc}/eventSubscriptions/broken/deliveries?{API}").text

        document = http.get("/openapi.json").json()
        for name in ("good", "flaky", "broken", "nobody"):
            _validate(document, TEMPLATE + "/deliveries", "GET",
                      http.get(f"{svc}/eventSubscriptions/{name}/deliveries?{API}"))
        _validate(document, TEMPLATE, "GET", http.get(f"{svc}/eventSubscriptions/good?{API}"))
        missing = http.get(f"{svc}/eventSubscriptions/nobody/deliveries?{API}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"
        bad_name = http.get(f"{svc}/eventSubscriptions/-x/deliveries?{API}")
        assert bad_name.status_code == 400
        reader = http.get(f"{svc}/eventSubscriptions/good/deliveries?{API}", headers=server.auth(role="reader"))
        assert reader.status_code == 403


def test_deliveries_in_the_azure_style(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "azure", ["--api-style", "azure", "--allow-private-event-destinations",
                                                    "--event-retry-delay", "600"]).start()
    svc = service_path("evdeliv2")
    try:
        with _client(server) as http, Receiver(Behaviour(status=400)) as broken:
            assert http.put(f"{svc}?{AZURE}", json=SERVICE_BODY).status_code in (200, 201)
            made = http.put(f"{svc}/eventSubscriptions/broken?{AZURE}", json={"properties": {"destination": {
                "endpointType": "WebHook", "properties": {"endpointUrl": broken.url}}}})
            assert made.status_code == 201, made.text
            label = made.json()["properties"]["metricsLabel"]
            assert label == metrics_label(f"{svc}/eventSubscriptions/broken")
            http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{AZURE}")
            path = f"{svc}/eventSubscriptions/broken/deliveries?{AZURE}"
            _until(lambda: http.get(path).json()["properties"]["deadLettered"] == 1, server)
            body = http.get(path).json()
            assert body["id"] == f"{svc}/eventSubscriptions/broken/deliveries"
            assert body["type"] == "Microsoft.ApiManagement/service/eventSubscriptions/deliveries"
            document = http.get("/openapi.json").json()
            _validate(document, TEMPLATE + "/deliveries", "GET", http.get(path))
            _validate(document, TEMPLATE, "GET", http.get(f"{svc}/eventSubscriptions/broken?{AZURE}"))
            props = body["properties"]
            assert props["metricsLabel"] == label
            assert props["deadLetters"][0]["reason"] == "HTTP 400 (permanent)"
            assert props["redeliverCommand"].startswith("tenant-access events redeliver")
            missing = http.get(f"{svc}/eventSubscriptions/nobody/deliveries?{AZURE}")
            assert missing.status_code == 404
            assert "error" in missing.json()
            audited = http.get(f"{svc}/auditEvents", params={"api-version": AZURE.split("=")[1],
                                                                "operation": PUT_OP}).json()["value"]
            assert len(audited) == 1
    finally:
        server.stop()
