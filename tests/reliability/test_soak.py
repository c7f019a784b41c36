"""Soak: ten minutes of mixed traffic from several clients; memory and open file descriptors stay
flat and nothing fails.

Opt-in (``-m soak``; the default run deselects it): ``.venv/bin/pytest -m soak -s tests/reliability``.
``SOAK_SECONDS`` shortens or lengthens the run (default 600). The server's resident memory and
descriptor count are sampled from ``/proc`` every few seconds; after a warm-up (a tenth of the run,
at least 20 s) the first and last windows are compared.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tenant_access.security.sas import make_sas
from tests.conftest import API, SERVICE_BODY, service_path
from tests.reliability import invariants
from tests.serverproc import ServerProcess

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
CLIENTS = 4
SAMPLE_EVERY = 5.0


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.soak
def test_soak(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--log-level", "warning"]).start()
    assert server.proc is not None
    pid = server.proc.pid
    services = [service_path(f"soak-{i}") for i in range(4)]
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
        for svc in services:
            assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
            assert http.patch(f"{svc}/tenant/access?{API}", headers={"If-Match": "*"},
                              json={"properties": {"enabled": True}}).status_code == 200
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
            while not stop.is_set():
                n += 1
                svc = rng.choice(services)
                name = rng.choice(["access", "gitAccess"])
                access = f"{svc}/tenant/{name}"
                pick = rng.random()
                expected = {200}
                try:
                    if pick < 0.25:
                        response = http.get(f"{access}?{API}")
                    elif pick < 0.35:
                        response = http.head(f"{access}?{API}")
                    elif pick < 0.45:
                        response = http.get(f"{svc}/tenant?{API}")
                    elif pick < 0.6:
                        response = http.post(f"{access}/regenerateSecondaryKey?{API}",
                                             headers={"Idempotency-Key": f"soak-{worker}-{n}"})
                    elif pick < 0.7:
                        response = http.post(f"{access}/listSecrets?{API}")
                    elif pick < 0.75:
                        response = http.patch(f"{svc}/tenant/gitAccess?{API}", headers={"If-Match": "*"},
                                              json={"properties": {"enabled": True}})
                    elif pick < 0.8:
                        response = http.put(f"{svc}?{API}", json={**SERVICE_BODY, "tags": {"n": str(n % 7)}})
                    elif pick < 0.85:
                        response = http.get(f"{svc}/auditEvents?{API}&$top=20")
                    elif pick < 0.92:
                        keys = http.post(f"{svc}/tenant/access/listSecrets?{API}").json()["data"]
                        soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
                        response = http.get(f"{svc}/tenant/access?{API}",
                                            headers={"Authorization": make_sas("integration", keys["primary_key"],
                                                                               soon)})
                        expected = {200, 401}  # a concurrent rotation of the primary may have won
                    else:
                        response = http.get(f"{service_path('no-such-' + str(n))}?{API}")
                        expected = {404}
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    outcomes[str(response.status_code)] += 1
                    if response.status_code not in expected:
                        errors.append(f"{response.request.method} {response.request.url.path}: "
                                      f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    samples: list[tuple[float, int, int]] = []
    try:
        while time.monotonic() - started < SECONDS:
            time.sleep(SAMPLE_EVERY)
            samples.append((time.monotonic() - started, _rss_kib(pid), _fds(pid)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        server.stop()
    warm = max(20.0, SECONDS / 10)
    window = max(3, int(warm / SAMPLE_EVERY))
    steady = [s for s in samples if s[0] >= warm]
    first, last = steady[:window], steady[-window:]
    rss_start, rss_end = statistics.median(s[1] for s in first), statistics.median(s[1] for s in last)
    fds_start, fds_end = max(s[2] for s in first), max(s[2] for s in last)
    total = sum(outcomes.values())
    report = {
        "seconds": round(time.monotonic() - started), "requests": total, "per_second": round(total / SECONDS),
        "statuses": dict(outcomes), "errors": len(errors),
        "rss_kib": {"start": rss_start, "end": rss_end, "max": max(s[1] for s in samples)},
        "fds": {"start": fds_start, "end": fds_end, "max": max(s[2] for s in samples)},
    }
    print("\nsoak:", json.dumps(report))
    (tmp_path / "soak.json").write_text(json.dumps({**report, "samples": samples}))
    assert errors == [], errors[:10]
    assert rss_end <= rss_start * 1.15 + 8 * 1024, report  # flat: within 15 % + 8 MiB of the steady start
    assert fds_end <= fds_start + 4, report
    assert invariants.problems(tmp_path / "tenant-access.db") == []
