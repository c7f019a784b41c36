"""X-Forwarded-For is believed only from the proxies ``--forwarded-allow-ips`` names: by default a
client (even one behind a local forwarder) cannot pick the address that the failure limiter
counts and that audit records name."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

LIMIT = 3


def _owner(server: ServerProcess) -> httpx.Client:
    """The owner calls from 127.0.0.2, so the failures sent from 127.0.0.1 do not lock it out."""
    return httpx.Client(base_url=server.url, headers=server.auth(), timeout=10,
                        transport=httpx.HTTPTransport(local_address="127.0.0.2"))


def _denied_clients(owner: httpx.Client, svc: str) -> list[str]:
    records = owner.get(f"{svc}/auditEvents?{API}&operation=access.get").json()["data"]
    return [r["client"] for r in records if r["outcome"] == "denied"]


def _forged(server: ServerProcess, svc: str, count: int, address: str | None = None) -> list[int]:
    """``count`` bad credentials from 127.0.0.1, each claiming another address (or ``address``)."""
    statuses = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for index in range(count):
            forwarded = address or f"203.0.113.{index + 1}"
            statuses.append(client.get(f"{svc}/tenant/access?{API}", headers={
                "Authorization": "Bearer forged", "X-Forwarded-For": forwarded}).status_code)
    return statuses


def test_forwarded_headers_are_ignored_by_default(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--auth-failures-per-minute", str(LIMIT)]).start()
    try:
        with _owner(server) as owner:
            svc = service_path("proxied-" + uuid.uuid4().hex[:6])
            assert owner.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
            # A new forged address on every attempt changes nothing: the peer, 127.0.0.1, is counted.
            assert _forged(server, svc, LIMIT + 2) == [401] * LIMIT + [429, 429]
            assert set(_denied_clients(owner, svc)) == {"127.0.0.1"}
    finally:
        server.stop()


def test_forwarded_headers_are_believed_from_named_proxies(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--auth-failures-per-minute", str(LIMIT),
                                      "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8"]).start()
    try:
        with _owner(server) as owner:
            svc = service_path("proxied-" + uuid.uuid4().hex[:6])
            assert owner.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
            # Behind the named proxy each forwarded client has its own window...
            assert _forged(server, svc, LIMIT + 2) == [401] * (LIMIT + 2)
            # ...and one client is limited however many proxy connections it comes through.
            assert _forged(server, svc, LIMIT + 1, "198.51.100.9") == [401] * LIMIT + [429]
            clients = _denied_clients(owner, svc)
            assert "203.0.113.1" in clients and "198.51.100.9" in clients
            assert "127.0.0.1" not in clients
            # 127.0.0.2 is not a named proxy: what it forwards is ignored.
            forged_owner = owner.get(f"{svc}/tenant/access?{API}", headers={"X-Forwarded-For": "192.0.2.1",
                                                                           "Authorization": "Bearer forged"})
            assert forged_owner.status_code == 401
            assert "192.0.2.1" not in _denied_clients(owner, svc)
    finally:
        server.stop()


def test_a_bad_proxy_list_stops_the_start(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--forwarded-allow-ips", "proxy.example.com"])
    with pytest.raises(RuntimeError, match=r"'proxy\.example\.com' is not an IP address"):
        server.start(timeout=20)


def test_believing_every_peer_is_warned_about(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--auth-failures-per-minute", str(LIMIT), "--forwarded-allow-ips", "*"]).start()
    try:
        assert "--forwarded-allow-ips '*'" in server.log()
        with _owner(server) as owner:
            svc = service_path("proxied-" + uuid.uuid4().hex[:6])
            assert owner.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
            assert _forged(server, svc, LIMIT + 2) == [401] * (LIMIT + 2)
    finally:
        server.stop()
