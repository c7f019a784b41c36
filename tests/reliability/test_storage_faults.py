"""Storage faults: the answers are 2xx, 4xx or 503 with Retry-After, never a 500 and never a
half-applied change, and the service is normal again once the fault clears, without a restart.

Three kinds of fault, all under the real application served over HTTP on 127.0.0.1:

- a fault-injecting wrapper around the storage interface (tests/reliability/faults.py): errors on
  a seeded share of calls (the store unreachable, the answer lost after the commit, a disk error
  inside the transaction) and added latency;
- a full database: SQLite's page limit (``PRAGMA max_page_count``) on the writer connection;
- a full disk: a 16 MiB tmpfs filesystem (needs root and mount rights; CI runs as root).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenant_access.storage.sqlite import SqliteStore
from tests.conftest import API, SERVICE_BODY, service_path
from tests.reliability import invariants
from tests.reliability.faults import KINDS, FaultyStore
from tests.reliability.inproc import InProcessServer, settings_for

SEED = 20261127
REGENERATE = ("regeneratePrimaryKey", "regenerateSecondaryKey", "git/regeneratePrimaryKey",
              "git/regenerateSecondaryKey")


def _allowed(response: httpx.Response) -> None:
    """The promise under faults: 2xx, 4xx, or 503 with a Retry-After of whole seconds."""
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text)
    if response.status_code == 503:
        assert response.headers["retry-after"].isdigit(), response.headers
        assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[InProcessServer, FaultyStore]]:
    settings = settings_for(tmp_path)
    from tenant_access.runtime import open_store_for

    store = FaultyStore(open_store_for(settings), seed=SEED)
    server = InProcessServer(settings, store).start()  # type: ignore[arg-type]
    yield server, store
    server.stop()


@pytest.mark.slow
def test_injected_faults_answer_503_and_change_all_or_nothing(faulty: tuple[InProcessServer, FaultyStore],
                                                              tmp_path: Path) -> None:
    server, store = faulty
    services = [service_path(f"faulty-{i}") for i in range(3)]
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
        for svc in services:
            assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
    store.rate, store.latency = 0.3, 0.004
    statuses: Counter[int] = Counter()
    acknowledged: dict[str, str] = {}  # idempotency key -> the version id the (last) answer named
    lock = threading.Lock()

    def client(worker: int) -> None:
        rng = random.Random(SEED + worker)
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
            for step in range(60):
                svc = rng.choice(services)
                access = f"{svc}/tenant/{rng.choice(['access', 'gitAccess'])}"
                choice = rng.random()
                if choice < 0.45:
                    # A rotation, retried with its idempotency key until it is answered: exactly once.
                    key, operation = f"w{worker}-{step}", rng.choice(REGENERATE)
                    for _ in range(50):
                        response = http.post(f"{access}/{operation}?{API}", headers={"Idempotency-Key": key})
                        _allowed(response)
                        with lock:
                            statuses[response.status_code] += 1
                        if response.status_code != 503:
                            break
                    assert response.status_code == 200, response.text
                    version = response.json()["data"]["id"]
                    with lock:
                        assert acknowledged.setdefault(key, version) == version, key
                    continue
                if choice < 0.6:
                    response = http.post(f"{access}/listSecrets?{API}")
                elif choice < 0.75:
                    response = http.patch(f"{access}?{API}", headers={"If-Match": "*"},
                                          json={"properties": {"enabled": rng.random() < 0.5}})
                elif choice < 0.85:
                    response = http.put(f"{svc}?{API}", json={**SERVICE_BODY, "tags": {"step": str(step)}})
                elif choice < 0.95:
                    response = http.get(f"{access}?{API}")
                else:
                    response = http.get(f"{svc}/auditEvents?{API}")
                _allowed(response)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200 and "listSecrets" not in str(response.url):
                    assert '"primary_key":' not in response.text
                with lock:
                    statuses[response.status_code] += 1

    errors: list[BaseException] = []

    def guarded(w: int) -> None:
        try:
            client(w)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert statuses[503] > 20 and statuses[200] > 100, statuses
    assert all(store.injected[kind] > 0 for kind in KINDS), store.injected

    # The fault clears: the same server, not restarted, serves everything again.
    store.clear()
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
        for svc in services:
            for name in ("access", "gitAccess"):
                for suffix in ("listSecrets", "regenerateSecondaryKey"):
                    assert http.post(f"{svc}/tenant/{name}/{suffix}?{API}").status_code == 200
            assert http.get(f"{svc}/auditEvents?{API}").status_code == 200
        assert http.get("/readyz").status_code == 200
    # Nothing half-applied, and every acknowledged rotation happened exactly once, lost answers included.
    database = tmp_path / "tenant-access.db"
    assert invariants.problems(database) == []
    rotated = invariants.regenerated(database)
    assert set(acknowledged.values()) <= rotated
    assert len(rotated) == len(acknowledged) + len(services) * 2  # plus the post-fault rotations


def _full(server: InProcessServer, store: SqliteStore, pages: int | None) -> None:
    """Cap the database at its current size (or lift the cap) on the writer's own connection."""
    def cap(conn: Any) -> None:
        size = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {size if pages is None else pages}")

    server.run(store._write(cap))


def _fill_until_refused(http: httpx.Client, access: str) -> int:
    """Rotate until the store refuses; answers how many rotations still fitted."""
    for done in range(2000):
        response = http.post(f"{access}/regenerateSecondaryKey?{API}", headers={"Idempotency-Key": f"fill-{done}"})
        _allowed(response)
        if response.status_code == 503:
            return done
        assert response.status_code == 200
    raise AssertionError("the store never filled up")


def _read_until_refused(http: httpx.Client, access: str) -> int:
    """Read secrets (each read is audited) until the store refuses; answers how many still fitted."""
    for done in range(2000):
        response = http.post(f"{access}/listSecrets?{API}")
        _allowed(response)
        if response.status_code == 503:
            return done
        assert response.status_code == 200
    raise AssertionError("the audit table never filled up")


def _while_full(http: httpx.Client, svc: str) -> None:
    access = f"{svc}/tenant/access"
    before = http.get(f"{access}?{API}").json()["data"]
    for method, url, kwargs in (
        ("POST", f"{access}/regeneratePrimaryKey", {}),
        ("POST", f"{access}/listSecrets", {}),  # a read of keys that cannot be audited is refused
        ("PATCH", access, {"headers": {"If-Match": "*"}, "json": {"properties": {"enabled": True}}}),
        ("PUT", service_path("no-room-" + uuid.uuid4().hex[:6]), {"json": SERVICE_BODY}),
    ):
        response = http.request(method, f"{url}?{API}", **kwargs)
        _allowed(response)
        assert response.status_code == 503, (method, url, response.text)
        assert '"primary_key":' not in response.text
    # Reads need no room: they keep working, and show that nothing changed.
    assert http.get(f"{access}?{API}").json()["data"] == before
    assert http.get(f"{svc}/tenant?{API}").status_code == 200


@pytest.mark.slow
def test_a_full_database_refuses_writes_with_503_and_recovers(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    from tenant_access.runtime import open_store_for

    store = open_store_for(settings)
    assert isinstance(store, SqliteStore)
    with InProcessServer(settings, store) as server, \
            httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
        svc = service_path("full-db")
        assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        _full(server, store, None)
        assert _fill_until_refused(http, f"{svc}/tenant/gitAccess") >= 0
        # A rotation needs room in several tables (key versions, audit, event outbox), a secret read
        # only in the audit table, whose last page may still have some: read until it has none.
        assert _read_until_refused(http, f"{svc}/tenant/gitAccess") >= 0
        _while_full(http, svc)
        assert invariants.problems(tmp_path / "tenant-access.db") == []
        _full(server, store, 1_073_741_823)  # the fault clears
        for suffix in ("regeneratePrimaryKey", "listSecrets"):
            assert http.post(f"{svc}/tenant/access/{suffix}?{API}").status_code == 200
        assert http.put(f"{service_path('room-again')}?{API}", json=SERVICE_BODY).status_code == 201
    assert invariants.problems(tmp_path / "tenant-access.db") == []


@contextlib.contextmanager
def _tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill_disk(path: Path) -> Path:
    """Take every free byte of the filesystem (what is left when a log or a backup fills a disk)."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as out:
        for block in (1 << 20, 4096, 1):
            room = True
            while room:
                try:
                    out.write(b"\0" * block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    room = False
    return filler


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_full_disk_refuses_writes_with_503_and_recovers(tmp_path: Path) -> None:
    with _tiny_filesystem(tmp_path / "tiny", "16m") as disk:
        settings = settings_for(disk)
        with InProcessServer(settings) as server, \
                httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
            svc = service_path("full-disk")
            assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
            filler = _fill_disk(disk)
            _fill_until_refused(http, f"{svc}/tenant/gitAccess")
            _while_full(http, svc)
            filler.unlink()  # the fault clears
            for suffix in ("regeneratePrimaryKey", "listSecrets", "regenerateSecondaryKey"):
                assert http.post(f"{svc}/tenant/access/{suffix}?{API}").status_code == 200
            assert http.put(f"{service_path('room-again')}?{API}", json=SERVICE_BODY).status_code == 201
        assert invariants.problems(disk / "tenant-access.db") == []
