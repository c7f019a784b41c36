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
            assert [json.loads(line)["type"].rsplit(".", 1)[1] for line in tail.stdout.splitlines()] == \
                ["ServiceCreated", "KeyRegenerated"]

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
