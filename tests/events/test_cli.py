"""``tenant-access events dead-letters / redeliver / tail`` against a real server's store, with a
real receiver that always answers 500 and then recovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path
from tests.events.receiver import Behaviour, Receiver


def _cli(server: DbServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    return subprocess.run([sys.executable, "-m", "tenant_access", "events", *args, "--data-dir",
                           str(server.data_dir), *server.database.args()], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def _wait(predicate: object, server: DbServer, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out; the server's log ends:\n{server.log()[-3000:]}")


def test_dead_letters_are_listed_with_their_reason_and_redelivered(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "data", ["--allow-private-event-destinations",
                                                   "--event-retry-window", "0"]).start()
    svc = service_path("evcli1")
    try:
        with Receiver(Behaviour(status=500)) as receiver, \
                httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
            http.put(f"{svc}?{API}", json=SERVICE_BODY)
            assert http.put(f"{svc}/eventSubscriptions/hook?{API}", json={"destination": receiver.url}).status_code \
                == 201
            version = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").json()["data"]["id"]
            _wait(lambda: "1 dead letter" in _cli(server, "dead-letters").stderr, server)
            listed = _cli(server, "dead-letters", "--json")
            dead = [json.loads(line) for line in listed.stdout.splitlines()]
            assert [d["event"]["data"]["newVersionId"] for d in dead] == [version]
            assert "HTTP 500" in dead[0]["reason"]
            assert "retry window of 0s exhausted" in dead[0]["reason"]
            tail = _cli(server, "tail", "--no-follow")
            # The service was created before anyone subscribed (and no tail ran): no event was written.
            assert [json.loads(line)["type"].rsplit(".", 1)[1] for line in tail.stdout.splitlines()] == \
                ["KeyRegenerated"]

            receiver.behaviour.status = 200
            before = len(receiver.posts())
            done = _cli(server, "redeliver", dead[0]["event"]["id"])
            assert "queued 1" in done.stdout, done.stderr
            _wait(lambda: len(receiver.posts()) > before, server)
            assert receiver.posts()[-1].headers["webhook-id"] == dead[0]["event"]["id"]
            _wait(lambda: "0 dead letter" in _cli(server, "dead-letters").stderr, server)
    finally:
        server.stop()
        server.database.drop()


def _outbox_types(server: DbServer) -> list[str]:
    rows = server.database.execute("SELECT type FROM event_outbox ORDER BY id")
    return [str(r[0]).rsplit(".", 1)[1] for r in rows]


def test_events_are_written_only_when_wanted_unless_emulator_controls_are_on(db_backend: Backend,
                                                                              tmp_path: Path) -> None:
    """No subscription and no tail: a change writes no outbox row (the request path's saving). A
    subscription on another service changes nothing for this one; a running tail makes every change
    write its events; with the emulator controls on, everything is written (its event list)."""
    server = db_backend.server(tmp_path / "data", ["--allow-private-event-destinations"]).start()
    svc, other = service_path("evcli2"), service_path("evcli3")
    tail = None
    try:
        with Receiver() as receiver, httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
            for path in (svc, other):
                assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            assert http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
            assert _outbox_types(server) == []
            assert http.put(f"{other}/eventSubscriptions/hook?{API}", json={"destination": receiver.url}) \
                .status_code == 201
            assert http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
            assert http.post(f"{other}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
            assert _outbox_types(server) == ["KeyRegenerated"]  # the subscribed service's only
            env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
            tail = subprocess.Popen([sys.executable, "-m", "tenant_access", "events", "tail", "--last", "0",
                                     "--data-dir", str(server.data_dir), *server.database.args()],
                                    stdout=subprocess.PIPE, text=True, env=env)
            _wait(lambda: server.database.execute(
                "SELECT COUNT(*) FROM event_subscriptions WHERE service_key = '~tail'")[0][0] == 1, server)
            version = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").json()["data"]["id"]
            assert tail.stdout is not None
            followed = json.loads(tail.stdout.readline())
            assert followed["data"]["newVersionId"] == version
            tail.terminate()
            tail.wait(15)
            tail.stdout.close()
            assert server.database.execute(
                "SELECT COUNT(*) FROM event_subscriptions WHERE service_key = '~tail'")[0][0] == 0
            assert http.get(f"{other}/eventSubscriptions?{API}").json()["data"][0]["name"] == "hook"
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()
            tail.wait(5)
        server.stop()
    emulator = db_backend.server(tmp_path / "emulator", ["--emulator-controls"]).start()
    try:
        with httpx.Client(base_url=emulator.url, headers=emulator.auth(), timeout=30) as http:
            assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
            assert http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
            listed = http.get("/_emulator/events").json()["events"]
            assert [e["type"].rsplit(".", 1)[1] for e in listed][-2:] == ["ServiceCreated", "KeyRegenerated"]
    finally:
        emulator.stop()
