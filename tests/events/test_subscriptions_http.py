"""The subscriptions API on a real server (both stores, both wire styles): the CloudEvents handshake,
the Event Grid validation event, refusals of destinations that do not answer or are not allowed, and
a rotation's signed event arriving at a real receiver."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenant_access import events_net
from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path
from tests.events.receiver import Behaviour, Receiver

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def server(db_backend: Backend, tmp_path: Path) -> Iterator[DbServer]:
    made = db_backend.server(tmp_path / "data", ["--allow-private-event-destinations"]).start()
    yield made
    made.stop()


@pytest.fixture
def strict_server(db_backend: Backend, tmp_path: Path) -> Iterator[DbServer]:
    made = db_backend.server(tmp_path / "strict", ["--api-style", "azure"]).start()
    yield made
    made.stop()


def _client(server: DbServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.auth(), timeout=30)


def test_subscribe_handshake_and_a_signed_delivery(server: DbServer) -> None:
    svc = service_path("evhttp1")
    with _client(server) as http, Receiver() as receiver:
        assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        made = http.put(f"{svc}/eventSubscriptions/hook?{API}", json={"properties": {
            "destination": receiver.url, "eventTypes": ["Microsoft.ApiManagement.TenantAccess.KeyRegenerated"],
            "secret": SECRET}})
        assert made.status_code == 201, made.text
        data = made.json()["data"]
        assert data["signed"] is True
        assert SECRET not in made.text
        options = [r for r in receiver.behaviour.received if r.method == "OPTIONS"]
        assert len(options) == 1
        assert options[0].headers["webhook-request-origin"] == server.url.split("://", 1)[1]
        listed = http.get(f"{svc}/eventSubscriptions?{API}").json()["data"]
        assert [s["name"] for s in listed] == ["hook"]
        assert http.get(f"{svc}/eventSubscriptions/hook?{API}").json()["data"]["destination"] == receiver.url
        version = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").json()["data"]["id"]
        deadline = time.monotonic() + 15
        while not receiver.posts() and time.monotonic() < deadline:
            time.sleep(0.05)
        post = receiver.posts()[0]
        sent = json.loads(post.body)
        assert sent["type"] == "Microsoft.ApiManagement.TenantAccess.KeyRegenerated"
        assert sent["data"]["newVersionId"] == version
        assert post.headers["webhook-signature"] == events_net.signature(
            SECRET, post.headers["webhook-id"], int(post.headers["webhook-timestamp"]), post.body)
        label = data["metrics_label"]
        assert label == hashlib.sha256(f"{svc}/eventSubscriptions/hook".lower().encode()).hexdigest()[:12]
        series = f'tenant_access_event_deliveries_total{{outcome="delivered",subscription="{label}"}} 1.0'
        deadline = time.monotonic() + 10
        while series not in http.get("/metrics").text and time.monotonic() < deadline:
            time.sleep(0.1)
        scraped = http.get("/metrics").text
        assert series in scraped
        assert "evhttp1" not in scraped.lower()  # the label names no service, group or subscription id
        assert http.delete(f"{svc}/eventSubscriptions/hook?{API}").status_code == 200
        assert http.get(f"{svc}/eventSubscriptions/hook?{API}").status_code == 404


@pytest.mark.parametrize(("behaviour", "why"), [
    (Behaviour(answers_options=False), "HTTP 404"),
    (Behaviour(allowed_origin="https://someone-else.example"), "WebHook-Allowed-Origin"),
    (Behaviour(allowed_origin=None), "WebHook-Allowed-Origin"),
])
def test_a_destination_that_does_not_complete_the_handshake_is_refused(
        server: DbServer, behaviour: Behaviour, why: str) -> None:
    svc = service_path("evhttp2")
    with _client(server) as http, Receiver(behaviour) as receiver:
        http.put(f"{svc}?{API}", json=SERVICE_BODY)
        refused = http.put(f"{svc}/eventSubscriptions/hook?{API}", json={"destination": receiver.url})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert why in error["message"]
        assert http.get(f"{svc}/eventSubscriptions?{API}").json()["data"] == []


def test_a_destination_that_does_not_answer_at_all_is_refused(server: DbServer) -> None:
    svc = service_path("evhttp3")
    with _client(server) as http:
        http.put(f"{svc}?{API}", json=SERVICE_BODY)
        receiver = Receiver()
        port = receiver.server.server_address[1]
        receiver.server.server_close()  # nothing listens there any more
        refused = http.put(f"{svc}/eventSubscriptions/hook?{API}", json={"destination": f"http://127.0.0.1:{port}/"})
        assert refused.status_code == 400
        assert "did not answer" in refused.json()["error"]["message"]


def test_event_grid_schema_runs_the_validation_event(server: DbServer) -> None:
    svc = service_path("evhttp4")

    with _client(server) as http:
        http.put(f"{svc}?{API}", json=SERVICE_BODY)
        with Receiver() as receiver:  # answers 200 "ok": no validationResponse
            refused = http.put(f"{svc}/eventSubscriptions/egrid?{API}", json={
                "destination": receiver.url, "eventDeliverySchema": "EventGridSchema"})
            assert refused.status_code == 400
            assert "validationResponse" in refused.json()["error"]["message"]
            validation = receiver.posts()[0]
            assert validation.headers["aeg-event-type"] == "SubscriptionValidation"
            sent = json.loads(validation.body)
            assert sent[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
            assert len(sent[0]["data"]["validationCode"]) == 32
        with Receiver(Behaviour(validates=True)) as receiver:
            made = http.put(f"{svc}/eventSubscriptions/egrid?{API}", json={
                "destination": receiver.url, "eventDeliverySchema": "EventGridSchema"})
            assert made.status_code == 201, made.text
            assert made.json()["data"]["schema"] == "EventGridSchema"
            http.post(f"{svc}/tenant/gitAccess/regeneratePrimaryKey?{API}")
            deadline = time.monotonic() + 15
            while len(receiver.posts()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            delivered = json.loads(receiver.posts()[1].body)
            assert delivered[0]["eventType"] == "Microsoft.ApiManagement.TenantAccess.KeyRegenerated"
            assert delivered[0]["subject"] == "tenant/gitAccess/keys/primary"
            assert "webhook-signature" not in receiver.posts()[1].headers  # no secret, no signature


def test_a_redirect_during_the_handshake_is_refused(server: DbServer) -> None:
    svc = service_path("evhttp5")
    with _client(server) as http, Receiver() as target, \
            Receiver(Behaviour(location=None, answers_options=True)) as receiver:
        http.put(f"{svc}?{API}", json=SERVICE_BODY)
        receiver.behaviour.location = target.url
        refused = http.put(f"{svc}/eventSubscriptions/egrid?{API}", json={
            "destination": receiver.url, "eventDeliverySchema": "EventGridSchema"})
        assert refused.status_code == 400
        assert "HTTP 307" in refused.json()["error"]["message"]
        assert target.behaviour.received == []


@pytest.mark.parametrize("destination", [
    "http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
    "http://localhost:9/hook",
])
def test_private_destinations_are_refused_without_the_flag(strict_server: DbServer, destination: str) -> None:
    svc = service_path("evhttp6")
    with _client(strict_server) as http:
        http.put(f"{svc}?api-version=2022-08-01", json=SERVICE_BODY)
        refused = http.put(f"{svc}/eventSubscriptions/hook?api-version=2022-08-01",
                           json={"properties": {"destination": {"endpointType": "WebHook",
                                                                "properties": {"endpointUrl": destination}}}})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert "allow-private-event-destinations" in error["message"]
        listed = http.get(f"{svc}/eventSubscriptions?api-version=2022-08-01")
        assert listed.json() == {"value": []}
