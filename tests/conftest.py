from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import backends
from tests.backends import DbServer
from tests.pg import Cluster
from tests.serverproc import ServerProcess

API = "api-version=2024-05-01"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
SERVICE_BODY = {
    "location": "West Europe",
    "sku": {"name": "Developer", "capacity": 1},
    "properties": {"publisherEmail": "ops@example.com", "publisherName": "Ops"},
}


def provider(rg: str = "rg1", subscription: str = SUBSCRIPTION) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.ApiManagement"


def service_path(name: str, rg: str = "rg1", subscription: str = SUBSCRIPTION) -> str:
    return f"{provider(rg, subscription)}/service/{name}"


def access_path(name: str, access: str = "access", rg: str = "rg1") -> str:
    return f"{service_path(name, rg)}/tenant/{access}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a server from these fixtures runs once per storage backend."""
    if "db_backend" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", backends.NAMES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The PostgreSQL the tests use: ``TEST_DATABASE_URL``, or a private server started from pgserver."""
    cluster = Cluster.from_env() or Cluster.private()
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def db_backend(request: pytest.FixtureRequest) -> Iterator[backends.Backend]:
    """The storage backend of this test (sqlite or postgres); SQLite where a test did not ask for both."""
    name: str = getattr(request, "param", "sqlite")
    made = backends.Backend(name, request.getfixturevalue("pg_cluster") if name == "postgres" else None)
    yield made
    made.close()


@pytest.fixture(scope="session")
def seed_server(db_backend: backends.Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbServer]:
    """One seed-format server for the many read-only and independent tests of a session."""
    data_dir = tmp_path_factory.mktemp(f"seed-server-{db_backend.name}")
    server = db_backend.server(data_dir).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(db_backend: backends.Backend, tmp_path: Path) -> Iterator[DbServer]:
    """A server of its own, on a database of its own, for tests that restart or kill it."""
    server = db_backend.server(tmp_path / "data").start()
    yield server
    server.stop()
    server.database.drop()


@pytest.fixture
def http(seed_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=seed_server.url, timeout=10, headers=seed_server.auth()) as client:
        yield client


@pytest.fixture
def service(http: httpx.Client) -> str:
    """A new service with a unique name; answers its path."""
    name = "svc-" + uuid.uuid4().hex[:10]
    response = http.put(f"{service_path(name)}?{API}", json=SERVICE_BODY)
    assert response.status_code == 201, response.text
    return service_path(name)
