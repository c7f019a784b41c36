"""Several server processes on one database, load that races them, and the checker that judges it.

The checker reads only what a client can see: the rotations it was answered (version id and the
version it replaced, with the time the request was sent and answered), the audit trail, and what
``listSecrets`` answers on every replica afterwards. From the audit trail it rebuilds the history of
the key: each rotation names the version it replaced, so the history must be one unbroken chain
from the initial version. A lost update (two rotations that both replaced the same version) shows
as a fork in that chain; a rotation acknowledged but not stored, as a missing link.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

AUDIT_OPERATION = "access.regenerate_secondary_key"


@dataclass
class Replicas:
    """N server processes sharing one database, one master key and one token signing key."""

    servers: list[ServerProcess]

    def __iter__(self) -> Iterator[ServerProcess]:
        return iter(self.servers)

    def __getitem__(self, index: int) -> ServerProcess:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    def headers(self) -> dict[str, str]:
        return self.servers[0].auth()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_replicas(base: Path, database_args: Sequence[str], count: int = 3, extra: Sequence[str] = (),
                   env: dict[str, str] | None = None) -> Replicas:
    """``count`` servers on the database ``database_args`` names, each with a data directory of its
    own holding a copy of the same token signing key, the same master key (from the environment) and
    the same public URL, as replicas on separate machines would."""
    from tenant_access.security.tokens import load_or_create_signing_key

    master = base64.b64encode(secrets.token_bytes(32)).decode()
    # Replicas behind one name share one public URL, so a token one of them issued is accepted by all.
    public = [] if "--public-url" in extra else ["--public-url", "https://replicas.example.com"]
    first = base / "replica-0"
    first.mkdir(parents=True)
    load_or_create_signing_key(first)
    servers = []
    try:
        for index in range(count):
            data_dir = base / f"replica-{index}"
            if index:
                data_dir.mkdir()
                shutil.copy2(first / "signing-key", data_dir / "signing-key")
            server = ServerProcess(data_dir, [*database_args, "--auth-failures-per-minute", "1000000", *public, *extra],
                                   env={"TENANT_ACCESS_MASTER_KEY": master, **(env or {})})
            servers.append(server.start())
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return Replicas(servers)


@contextmanager
def replicas_on(base: Path, database_args: Sequence[str], count: int = 3, extra: Sequence[str] = (),
                env: dict[str, str] | None = None) -> Iterator[Replicas]:
    running = start_replicas(base, database_args, count, extra, env)
    try:
        yield running
    finally:
        running.stop()


def new_service(replicas: Replicas, prefix: str = "race") -> str:
    """A new service whose ``access`` configuration is enabled (so shared access signatures work)."""
    path = service_path(f"{prefix}-{secrets.token_hex(4)}")
    response = httpx.put(f"{replicas[0].url}{path}?{API}", json=SERVICE_BODY, headers=replicas.headers(), timeout=30)
    assert response.status_code == 201, response.text
    enabled = httpx.patch(f"{replicas[0].url}{path}/tenant/access?{API}", json={"properties": {"enabled": True}},
                          headers={**replicas.headers(), "If-Match": "*"}, timeout=30)
    assert enabled.status_code == 200, enabled.text
    return path


def list_secrets(server: ServerProcess, path: str, headers: dict[str, str], access: str = "access") -> dict[str, Any]:
    response = httpx.post(f"{server.url}{path}/tenant/{access}/listSecrets?{API}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def audit_trail(server: ServerProcess, path: str, headers: dict[str, str],
                operation: str = AUDIT_OPERATION) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        response = httpx.get(f"{server.url}{path}/auditEvents?{API}&operation={operation}&$skip={len(records)}",
                             headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        records += page
        if not page:
            return records


@dataclass(frozen=True)
class Attempt:
    """One regeneration request as its client saw it."""

    client: int
    replica: int
    status: int
    sent: float
    answered: float
    version_id: str | None = None
    previous_id: str | None = None
    retry_after: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status == 200


@dataclass
class RaceResult:
    initial_version: str
    attempts: list[Attempt]
    audit: list[dict[str, Any]]
    finals: list[dict[str, Any]]
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> list[Attempt]:
        return [a for a in self.attempts if a.acknowledged]

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.attempts)


def regenerate(client: httpx.Client, server: ServerProcess, path: str, client_index: int, replica: int) -> Attempt:
    sent = time.monotonic()
    try:
        response = client.post(f"{server.url}{path}/tenant/access/regenerateSecondaryKey?{API}", timeout=30)
    except httpx.TransportError:
        return Attempt(client_index, replica, 0, sent, time.monotonic())
    answered = time.monotonic()
    if response.status_code == 200:
        data = response.json()["data"]
        return Attempt(client_index, replica, 200, sent, answered, data["id"], data["previous_id"])
    return Attempt(client_index, replica, response.status_code, sent, answered,
                   retry_after=response.headers.get("retry-after"))


def race(replicas: Replicas, path: str, clients: int = 8, per_client: int = 40) -> RaceResult:
    """``clients`` threads, each sending ``per_client`` regenerations of the same key, spread round-robin
    over the replicas (each client starting at a different one)."""
    headers = replicas.headers()
    initial = list_secrets(replicas[0], path, headers)["secondary_key_version_id"]
    start = threading.Barrier(clients)

    def run(index: int) -> list[Attempt]:
        made = []
        with httpx.Client(headers=headers) as client:
            start.wait()
            for n in range(per_client):
                replica = (index + n) % len(replicas)
                made.append(regenerate(client, replicas[replica], path, index, replica))
        return made

    began = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        attempts = [a for made in pool.map(run, range(clients)) for a in made]
    seconds = time.monotonic() - began
    audit = audit_trail(replicas[0], path, headers)
    finals = [list_secrets(server, path, headers) for server in replicas]
    result = RaceResult(initial, attempts, audit, finals, seconds)
    result.problems = check(result)
    return result


def check(result: RaceResult, *, ambiguous_allowed: int = 0) -> list[str]:
    """Everything that contradicts a linearizable history of rotations; empty when there is none.

    ``ambiguous_allowed``: how many stored rotations may lack an acknowledgement (requests answered
    503 when the database went away during their COMMIT, whose outcome the server could not know).
    """
    problems: list[str] = []
    acked = result.acknowledged
    ids = [a.version_id for a in acked]
    if len(set(ids)) != len(ids):
        problems.append(f"version ids returned more than once: {len(ids) - len(set(ids))}")

    records = result.audit
    by_new: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_new.setdefault(str(record["new_version_id"]), []).append(record)
    for attempt in acked:
        found = by_new.get(str(attempt.version_id), [])
        if len(found) != 1:
            problems.append(f"acknowledged rotation {attempt.version_id} has {len(found)} audit records")
        elif found[0]["old_version_id"] != attempt.previous_id:
            problems.append(f"rotation {attempt.version_id}: answered previous {attempt.previous_id}, "
                            f"audited {found[0]['old_version_id']}")

    # The history: every version replaced exactly once, one chain from the initial version.
    successors: dict[str, list[str]] = {}
    for record in records:
        successors.setdefault(str(record["old_version_id"]), []).append(str(record["new_version_id"]))
    forks = {old: new for old, new in successors.items() if len(new) > 1}
    if forks:
        lost = sum(len(new) - 1 for new in forks.values())
        problems.append(f"lost updates: {len(forks)} versions were replaced by more than one rotation "
                        f"({lost} rotations built on a state another had already replaced)")
    chain: list[str] = []
    cursor = result.initial_version
    seen = {cursor}
    while cursor in successors:
        cursor = successors[cursor][0]
        if cursor in seen:
            problems.append("the history has a cycle")
            break
        seen.add(cursor)
        chain.append(cursor)
    if len(chain) != len(records):
        problems.append(f"the history is not one chain: {len(chain)} of {len(records)} audited rotations "
                        "follow from the initial version")
    acked_ids = {str(a.version_id) for a in acked}
    unacknowledged = [v for v in chain if v not in acked_ids]
    if len(unacknowledged) > ambiguous_allowed:
        problems.append(f"{len(unacknowledged)} stored rotations were never acknowledged "
                        f"(at most {ambiguous_allowed} answered 503 during the outage)")

    # Real time: a rotation answered before another was sent must come before it in the history.
    position = {version: index for index, version in enumerate(chain)}
    ordered = sorted((a for a in acked if str(a.version_id) in position), key=lambda a: a.answered)
    by_sent = sorted(ordered, key=lambda a: a.sent)
    violations = 0
    for earlier in ordered:
        for later in by_sent:
            if later.sent <= earlier.answered:
                continue
            if position[str(later.version_id)] < position[str(earlier.version_id)]:
                violations += 1
    if violations:
        problems.append(f"{violations} pairs of rotations are stored in an order contradicting real time")

    # Afterwards, every replica serves the key of the last rotation in the history.
    final = chain[-1] if chain else result.initial_version
    last_acked = [v for v in chain if v in acked_ids]
    if last_acked and final != last_acked[-1] and not unacknowledged:
        problems.append("the stored key is not the one of the last acknowledged rotation")
    versions = {f["secondary_key_version_id"] for f in result.finals}
    keys = {f["secondary_key"] for f in result.finals}
    if versions != {final}:
        problems.append(f"replicas serve versions {sorted(versions)}, the history ends at {final}")
    if len(keys) != 1:
        problems.append("replicas serve different key material")
    return problems
