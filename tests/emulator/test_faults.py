"""Fault injection: a share of requests answered 429/500/503 with Retry-After, or delayed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tenant_access.client import RateLimited, ServerError, ServiceRef, ValidationError
from tenant_access.testing import RunningServer

SUB = "11111111-2222-3333-4444-555555555555"
REF = ServiceRef(SUB, "rg", "faulty")
API = "api-version=2024-05-01"


@pytest.fixture
def server(tenant_access_server: RunningServer) -> RunningServer:
    tenant_access_server.emulator.seed({"services": [{"subscription": SUB, "resource_group": "rg", "name": "faulty"}]})
    return tenant_access_server


def _service_url(server: RunningServer) -> str:
    return f"{server.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/faulty?{API}"


def test_a_share_of_matching_requests_gets_503_with_retry_after(server: RunningServer) -> None:
    server.emulator.set_faults([{"operation": "services.get", "status": 503, "rate": 0.5, "retry_after": 2}])
    statuses = []
    with httpx.Client(headers=server.headers()) as http:
        for _ in range(200):
            response = http.get(_service_url(server))
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.headers["retry-after"] == "2"
                error = response.json()["error"]
                assert error["code"] == "SERVICE_UNAVAILABLE" and "fault injected" in error["message"]
                assert response.json()["success"] is False
            else:
                assert response.status_code == 200, response.text
    failures = statuses.count(503)
    assert 60 <= failures <= 140, failures  # binomial(200, 0.5): more than 5 standard deviations of slack
    (rule,) = server.emulator.faults()
    assert rule["injected"] == failures and rule["remaining"] is None
    # Other operations are untouched.
    assert server.client.list_access(REF)


def test_count_limits_a_rule_and_the_client_sees_retry_after(server: RunningServer) -> None:
    server.emulator.add_fault("access.regenerate_secondary_key", status=429, retry_after=7, count=2)
    for _ in range(2):
        with pytest.raises(RateLimited) as caught:
            server.client.regenerate_secondary_key(REF.access())
        assert caught.value.retry_after == 7.0
    assert server.client.regenerate_secondary_key(REF.access()).id
    (rule,) = server.emulator.faults()
    assert (rule["remaining"], rule["injected"]) == (0, 2)


def test_latency_delays_without_failing(server: RunningServer) -> None:
    server.emulator.set_faults([{"operation": "access.get", "latency_ms": 300}])
    started = time.perf_counter()
    assert server.client.get_access(REF.access()).name == "access"
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    server.client.get_service(REF)
    assert time.perf_counter() - started < 0.3


def test_latency_and_status_together_and_patterns(server: RunningServer) -> None:
    with server.emulator.fault("access.*", status=500, latency_ms=100):
        started = time.perf_counter()
        with pytest.raises(ServerError) as caught:
            server.client.list_secrets(REF.access())
        assert caught.value.status == 500 and caught.value.retry_after is None
        assert time.perf_counter() - started >= 0.1
        server.client.get_service(REF)  # services.* does not match access.*
    assert server.emulator.faults() == []  # the with block cleared it
    server.client.list_secrets(REF.access())


def test_faults_come_after_authentication_and_never_hit_the_controls(server: RunningServer) -> None:
    server.emulator.set_faults([{"operation": "*", "status": 503}])
    assert httpx.get(_service_url(server)).status_code == 401  # no credential: still 401, not 503
    with pytest.raises(ServerError):
        server.client.get_service(REF)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert server.emulator.faults()[0]["injected"] == 1
    server.emulator.clear_faults()
    server.client.get_service(REF)


def test_reset_clears_the_rules(server: RunningServer) -> None:
    server.emulator.add_fault("services.get")
    server.emulator.reset()
    assert server.emulator.faults() == []


@pytest.mark.parametrize(("rules", "field"), [
    ([{"status": 404}], "body.rules[0].status"),
    ([{"status": 503, "rate": 0}], "body.rules[0].rate"),
    ([{"status": 503, "rate": 1.5}], "body.rules[0].rate"),
    ([{"status": 503, "latency": 10}], "body.rules[0].latency"),
    ([{"operation": "access.nope", "status": 503}], "body.rules[0].operation"),
    ([{"operation": "emulator.reset", "status": 503}], "body.rules[0].operation"),
    ([{"operation": "*"}], "body.rules[0]"),
    ([{"status": 503, "count": 0}], "body.rules[0].count"),
    ([{"status": 503, "retry_after": -1}], "body.rules[0].retry_after"),
    ([{"status": 503, "latency_ms": 10**6}], "body.rules[0].latency_ms"),
    ([{"status": 503}, "nope"], "body.rules[1]"),
])
def test_bad_rules_are_refused_and_the_old_ones_stay(server: RunningServer, rules: list[Any], field: str) -> None:
    server.emulator.add_fault("services.get", status=503, count=5)
    with pytest.raises(ValidationError) as caught:
        server.emulator.set_faults(rules)
    assert field in {d.field for d in caught.value.details}, caught.value
    assert [r["operation"] for r in server.emulator.faults()] == ["services.get"]


def test_a_single_rule_or_a_bare_list_is_accepted(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        one = http.put("/_emulator/faults", json={"operation": "services.get", "status": 503})
        assert one.status_code == 200 and len(one.json()["rules"]) == 1
        several = http.put("/_emulator/faults", json=[{"status": 429}, {"latency_ms": 5}])
        assert [r["status"] for r in several.json()["rules"]] == [429, None]
        assert http.delete("/_emulator/faults").json() == {"rules": []}


@pytest.mark.tenant_access(api_style="azure", tls=True)
def test_azure_style_faults_carry_arm_errors_and_the_sdk_retries_them(tenant_access_server: RunningServer) -> None:
    from azure.mgmt.apimanagement import ApiManagementClient

    server = tenant_access_server
    server.emulator.seed({"services": [{"subscription": SUB, "resource_group": "rg", "name": "faulty"}]})
    server.emulator.add_fault("access.regenerate_secondary_key", status=503, retry_after=0, count=2)
    with ApiManagementClient(server.azure_credential(), SUB, base_url=server.url,
                             connection_verify=str(server.cacert)) as sdk:
        sdk.tenant_access.regenerate_secondary_key("rg", "faulty", "access")  # retried by azure-core
    assert server.emulator.faults()[0]["injected"] == 2
    server.emulator.set_faults([{"operation": "services.get", "status": 429, "retry_after": 3}])
    import ssl

    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.cacert)), headers=server.headers()) as http:
        response = http.get(_service_url(server))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert "x-ms-request-id" in response.headers
