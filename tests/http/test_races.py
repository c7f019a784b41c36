"""The failure limiter under concurrency: a burst of bad credentials sent at once gets no more 401s
than a sequence would (the rest are 429), and a burst of expensive sign-ins from one address does
not starve a valid sign-in from another. Through the real server, from raw sockets."""

from __future__ import annotations

import datetime as dt
import statistics
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tenant_access.security.sas import make_sas
from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path
from tests.http.burst import Burst, raw_request, timed_post

FORM = "application/x-www-form-urlencoded"
LIMIT = 20
#: The connection cap is raised through the environment (not a flag), so that the tests also run,
#: and fail for the right reason, on a server that predates the cap.
MANY_CONNECTIONS = {"TENANT_ACCESS_MAX_CONNECTIONS_PER_ADDRESS": "2000"}


def _principal(server: DbServer) -> tuple[str, str]:
    created = subprocess.run(
        [sys.executable, "-m", "tenant_access", "principals", "create", "--data-dir", str(server.data_dir),
         *server.database.args(), "--role", "reader", "--scope", "/"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    return fields["client id"].strip(), fields["client secret"].strip()


def _form(client_id: str, secret: str) -> bytes:
    return urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
                      "scope": "https://management.azure.com/.default"}).encode()


@pytest.fixture
def limited(db_backend: Backend, tmp_path: Path) -> Iterator[DbServer]:
    """A server of its own (its failure windows start empty), on either store: PostgreSQL's reads
    really wait for the database, which is where an unguarded limiter is raced."""
    server = db_backend.server(tmp_path, ["--auth-failures-per-minute", str(LIMIT)], env=MANY_CONNECTIONS).start()
    yield server
    server.stop()
    server.database.drop()


def test_a_burst_of_bad_secrets_gets_at_most_the_limit_and_a_valid_sign_in_elsewhere_is_not_starved(
    limited: DbServer,
) -> None:
    client_id, secret = _principal(limited)
    token_path = "/tenant1/oauth2/v2.0/token"
    valid = _form(client_id, secret)
    # Idle: a valid sign-in from another address (127.0.0.2 is routed to lo too), the median of 3.
    idle_runs = [timed_post(limited.port, token_path, valid, source="127.0.0.2", content_type=FORM) for _ in range(3)]
    assert all(status == 200 for status, _ in idle_runs)
    idle = statistics.median(elapsed for _, elapsed in idle_runs)

    bad = raw_request("POST", token_path, {"Content-Type": FORM}, _form(client_id, "wrong-" + secret))
    burst = Burst(limited.port, bad, 500)
    burst.fire()
    status, busy = timed_post(limited.port, token_path, valid, source="127.0.0.2", content_type=FORM)
    statuses = Counter(burst.statuses())

    assert status == 200
    assert statuses[401] <= LIMIT, statuses
    assert statuses[401] + statuses[429] == 500, statuses
    assert busy <= 10 * idle, f"a valid sign-in took {busy:.3f} s during the burst, {idle:.3f} s idle"
    # The failures were counted: the address is refused now, a valid secret included.
    assert timed_post(limited.port, token_path, valid, source="127.0.0.1", content_type=FORM)[0] == 429


def test_valid_sign_ins_give_their_slot_back(limited: DbServer) -> None:
    """Only failures keep their place in the window: a client signing in often is never refused."""
    client_id, secret = _principal(limited)
    for _ in range(LIMIT + 5):
        status, _ = timed_post(limited.port, "/t/oauth2/v2.0/token", _form(client_id, secret), source="127.0.0.1",
                               content_type=FORM)
        assert status == 200


def test_a_burst_of_bad_bearer_tokens_gets_at_most_the_limit(limited: DbServer) -> None:
    path = f"{service_path('race-bearer')}?{API}"
    burst = Burst(limited.port, raw_request("GET", path, {"Authorization": "Bearer not-a-token"}), 300)
    burst.fire()
    statuses = Counter(burst.statuses())
    assert statuses[401] <= LIMIT, statuses
    assert statuses[401] + statuses[429] == 300, statuses


def test_a_burst_of_bad_signatures_gets_at_most_the_limit(limited: DbServer) -> None:
    """Checking a signature first reads the service's keys, which waits for the database while the
    rest of the burst arrives: signatures for a service that does not exist are read (and refused)
    afresh every time, and so are the first ones after a new key version."""
    # The owner calls from another address: the bursts' address is refused after the first one.
    owner = httpx.Client(base_url=limited.url, headers=limited.auth(), timeout=10,
                         transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    forged = make_sas("integration", "not-the-key", soon)
    with owner:
        svc = service_path("race-" + uuid.uuid4().hex[:6])
        access = f"{svc}/tenant/access"
        assert owner.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        assert owner.patch(f"{access}?{API}", json={"properties": {"enabled": True}},
                           headers={"If-Match": "*"}).status_code == 200
        assert owner.post(f"{access}/regenerateSecondaryKey?{API}").status_code == 200
        total = Counter[int]()
        for target in (f"{service_path('no-such-service')}/tenant/access", access):
            burst = Burst(limited.port, raw_request("GET", f"{target}?{API}", {"Authorization": forged}), 200)
            burst.fire()
            total.update(burst.statuses())
    assert total[401] <= LIMIT, total
    assert total[401] + total[429] == 400, total
