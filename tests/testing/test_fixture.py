"""The pytest plugin's fixtures and the in-process server behind them, used as a user would."""

from __future__ import annotations

import os
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenant_access.client import AuthenticationError, Client, ServiceRef
from tenant_access.testing import RunningServer, run_server, start_server

SUB = "11111111-2222-3333-4444-555555555555"
RIG = {"subscription": SUB, "resource_group": "rg", "services": [{"name": "apim", "access": {"enabled": True}}]}


def test_the_default_server_is_seed_style_strict_and_empty(tenant_access_server: RunningServer) -> None:
    server = tenant_access_server
    assert server.url.startswith("http://127.0.0.1:") and server.endpoint == server.url and server.port > 0
    assert (server.api_style, server.auth, server.cacert) == ("seed", "strict", None)
    assert server.client.list_services(SUB, "rg") == []
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    with Client(endpoint=server.url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.list_services(SUB, "rg")
    reader = httpx.get(f"{server.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service"
                       "?api-version=2024-05-01", headers=server.headers("reader"))
    assert reader.status_code == 200


@pytest.mark.tenant_access(seed=RIG)
def test_a_seed_in_the_marker(tenant_access_server: RunningServer) -> None:
    ref = ServiceRef(SUB, "rg", "apim")
    assert tenant_access_server.client.get_access(ref.access()).enabled is True


@pytest.mark.tenant_access(api_style="azure", tls=True)
class TestMarkersApplyToClassesAndTestsOverride:
    def test_class_options(self, tenant_access_server: RunningServer) -> None:
        assert tenant_access_server.url.startswith("https://")
        assert tenant_access_server.cacert is not None and tenant_access_server.cacert.is_file()
        assert tenant_access_server.client.list_services(SUB, "rg") == []
        tenant_access_server.emulator.seed(RIG)
        assert tenant_access_server.client.get_service(ServiceRef(SUB, "rg", "apim")).name == "apim"

    @pytest.mark.tenant_access(api_style="seed", tls=False)
    def test_the_closest_marker_wins(self, tenant_access_server: RunningServer) -> None:
        assert tenant_access_server.url.startswith("http://") and tenant_access_server.api_style == "seed"


@pytest.mark.parametrize("tenant_access_server", [
    {"api_style": "seed"}, {"api_style": "azure", "tls": True}, {"auth": "none"}, {"auth": "emulator"},
], indirect=True, ids=["seed", "azure", "no-auth", "emulator-auth"])
def test_indirect_parametrisation(tenant_access_server: RunningServer) -> None:
    tenant_access_server.emulator.seed(RIG)
    ref = ServiceRef(SUB, "rg", "apim")
    assert tenant_access_server.client.list_secrets(ref.access()).primary_key
    if tenant_access_server.auth == "none":
        assert tenant_access_server.headers() == {}


def test_the_factory_starts_several_servers(tenant_access_server_factory: Callable[..., RunningServer]) -> None:
    first = tenant_access_server_factory()
    second = tenant_access_server_factory(seed=RIG)
    assert first.url != second.url and first.data_dir != second.data_dir
    assert first.client.list_services(SUB, "rg") == []
    assert [s.name for s in second.client.list_services(SUB, "rg")] == ["apim"]


async def _async_listing(server: RunningServer) -> list[Any]:
    async with server.async_client() as client:
        return await client.list_services(SUB, "rg")


def test_an_async_client_for_the_same_server(tenant_access_server: RunningServer) -> None:
    import asyncio

    tenant_access_server.emulator.seed(RIG)
    assert [s.name for s in asyncio.run(_async_listing(tenant_access_server))] == ["apim"]


def test_run_server_outside_pytest_fixtures_cleans_up(tmp_path: Path) -> None:
    threads = set(threading.enumerate())
    with run_server(seed=RIG) as server:
        data_dir = server.data_dir
        assert (data_dir / "tenant-access.db").exists()
        assert [s.name for s in server.client.list_services(SUB, "rg")] == ["apim"]
    assert not data_dir.exists()
    assert set(threading.enumerate()) == threads
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
    server.stop()  # twice is fine

    kept = tmp_path / "kept"
    with run_server(data_dir=kept, seed=RIG):
        pass
    with run_server(data_dir=kept) as again:  # the same store, reopened
        assert [s.name for s in again.client.list_services(SUB, "rg")] == ["apim"]
    assert (kept / "tenant-access.db").exists()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else 0


def test_nothing_leaks_across_many_servers() -> None:
    with run_server() as warm:  # first start pays for imports; not what is measured here
        warm.client.list_services(SUB, "rg")
    threads, fds = set(threading.enumerate()), _open_fds()
    for _ in range(10):
        with run_server(seed=RIG) as server:
            server.client.list_services(SUB, "rg")
            server.emulator.add_fault("services.get", status=503, count=1)
    assert set(threading.enumerate()) == threads
    assert _open_fds() <= fds


def test_a_request_in_flight_is_answered_before_the_server_stops() -> None:
    server = start_server(auth="none", seed=RIG)
    server.emulator.set_faults([{"operation": "services.get", "latency_ms": 300}])
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(f"{server.url}/subscriptions/{SUB}/resourceGroups/rg/providers/"
                                 "Microsoft.ApiManagement/service/apim?api-version=2024-05-01").status_code)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.1)
    server.stop()
    caller.join(5)
    assert results == [200]


def test_a_bad_seed_fails_at_start_and_leaves_nothing_behind() -> None:
    from tenant_access.seeding import SeedError

    threads = set(threading.enumerate())
    with pytest.raises(SeedError, match=r"services\[0\]\.name"):
        start_server(seed={"services": [{"subscription": SUB, "resource_group": "rg", "name": "-"}]})
    with pytest.raises(ValueError, match="api style"):
        start_server(api_style="soap")
    assert set(threading.enumerate()) == threads


def test_tls_needs_the_certificate_and_rejects_strangers() -> None:
    with run_server(tls=True) as server:
        assert server.cacert is not None
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", verify=ssl.create_default_context())
        trusted = ssl.create_default_context(cafile=str(server.cacert))
        assert httpx.get(f"{server.url}/healthz", verify=trusted).status_code == 200


def _timings(count: int, **options: Any) -> tuple[list[float], list[float]]:
    starts, stops = [], []
    for _ in range(count):
        began = time.perf_counter()
        server = start_server(**options)
        started = time.perf_counter()
        verify = ssl.create_default_context(cafile=str(server.cacert)) if server.cacert else True
        assert httpx.get(f"{server.url}/healthz", verify=verify).status_code == 200
        stopping = time.perf_counter()
        server.stop()
        stops.append(time.perf_counter() - stopping)
        starts.append(started - began)
    return starts, stops


def test_start_and_stop_take_milliseconds(record_property: Callable[[str, object], None]) -> None:
    """The fixture's budget: 50 ms to start (ready to accept connections, store open) and 50 ms to
    stop (store closed, thread joined, temporary directory deleted), as the median of warm runs."""
    _timings(2)  # imports and the first-use costs of the process are not the fixture's
    starts, stops = _timings(15)
    tls_starts, tls_stops = _timings(5, tls=True, api_style="azure")
    report = {
        "start_ms": round(statistics.median(starts) * 1000, 1), "stop_ms": round(statistics.median(stops) * 1000, 1),
        "tls_start_ms": round(statistics.median(tls_starts) * 1000, 1),
        "tls_stop_ms": round(statistics.median(tls_stops) * 1000, 1),
    }
    record_property("tenant_access_server_timings", report)
    print("tenant_access_server timings (median):", report)
    assert report["start_ms"] <= 50 and report["stop_ms"] <= 50, report
    assert report["tls_start_ms"] <= 50 and report["tls_stop_ms"] <= 50, report


def test_each_server_signs_its_own_tokens(tenant_access_server_factory: Callable[..., RunningServer]) -> None:
    one, two = tenant_access_server_factory(), tenant_access_server_factory()
    assert (one.data_dir / "signing-key").read_bytes() != (two.data_dir / "signing-key").read_bytes()
    assert (one.data_dir / "signing-key").stat().st_mode & 0o777 == 0o600
    keys = list((one.data_dir / "master-keys").iterdir())
    assert keys and all(key.stat().st_mode & 0o777 == 0o600 for key in keys)
    response = httpx.get(f"{two.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service"
                         "?api-version=2024-05-01", headers=one.headers())
    assert response.status_code == 401


def test_start_server_from_inside_a_running_event_loop() -> None:
    """pytest-asyncio and anyio tests call it from a coroutine: nothing may need the caller's loop."""
    import asyncio

    async def scenario() -> list[str]:
        server = start_server(seed=RIG)
        try:
            async with server.async_client() as client:
                return [s.name for s in await client.list_services(SUB, "rg")]
        finally:
            server.stop()

    assert asyncio.run(scenario()) == ["apim"]


@pytest.mark.parametrize("proxies", [None, "127.0.0.1"])
def test_the_in_process_server_believes_forwarded_headers_only_from_named_proxies(proxies: str | None) -> None:
    """The in-process server is configured like the real one: uvicorn's default would believe
    X-Forwarded-For from any loopback peer."""
    options: dict[str, Any] = {"auth_failures_per_minute": 2}
    if proxies is not None:
        options["forwarded_allow_ips"] = proxies
    with run_server(**options) as server:
        url = f"{server.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service"
        statuses = [httpx.get(f"{url}?api-version=2024-05-01", headers={
            "Authorization": "Bearer forged", "X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(4)]
    assert statuses == ([401, 401, 429, 429] if proxies is None else [401] * 4)
