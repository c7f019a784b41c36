"""Delivery in a process of its own (both stores): the server's supervised child delivers, is
restarted when it dies, and goes when the server stops or is killed; ``--event-delivery off``
delivers nothing from the server, and ``tenant-access events deliver`` beside it does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tenant_access.domain.event_subscriptions import metrics_label
from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path
from tests.events.receiver import Receiver

CHILD = "tenant_access.delivery_process"


def _children(pid: int) -> list[int]:
    """The delivery processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and CHILD in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _subscribe(http: httpx.Client, svc: str, receiver: Receiver) -> None:
    assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
    made = http.put(f"{svc}/eventSubscriptions/hook?{API}", json={"properties": {"destination": receiver.url}})
    assert made.status_code == 201, made.text


def _rotate(http: httpx.Client, svc: str) -> str:
    answer = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}")
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["data"]["id"]
    return version


def _delivered_versions(receiver: Receiver) -> list[str]:
    return [json.loads(p.body)["data"]["newVersionId"] for p in receiver.posts()]


def test_the_child_delivers_is_restarted_and_stops_with_the_server(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "data", ["--allow-private-event-destinations"]).start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        assert _until(lambda: len(_children(pid)) == 1), "no delivery child"
        first = _children(pid)[0]
        svc = service_path("evproc1")
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http, Receiver() as receiver:
            _subscribe(http, svc, receiver)
            version = _rotate(http, svc)
            assert _until(lambda: version in _delivered_versions(receiver))
            label = metrics_label(f"{svc}/eventSubscriptions/hook")
            series = f'tenant_access_event_deliveries_total{{outcome="delivered",subscription="{label}"}}'
            assert _until(lambda: f"{series} 1.0" in http.get("/metrics").text), \
                [line for line in http.get("/metrics").text.splitlines() if "event_deliveries" in line]
            os.kill(first, signal.SIGKILL)
            assert _until(lambda: [c for c in _children(pid) if c != first] != []), "the child was not restarted"
            again = _rotate(http, svc)
            assert _until(lambda: again in _delivered_versions(receiver))
            # Summed over both children (a new child counts from zero).
            assert _until(lambda: f"{series} 2.0" in http.get("/metrics").text), server.log()
        second = _children(pid)
        server.stop()  # SIGTERM
        assert _until(lambda: not any(_alive(c) for c in second)), "the child outlived its server"
    finally:
        server.stop()


def test_a_server_killed_takes_its_child_with_it(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "data").start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        assert _until(lambda: len(_children(pid)) == 1)
        child = _children(pid)[0]
        server.proc.kill()
        assert _until(lambda: not _alive(child)), "the child kept running without its server"
    finally:
        server.stop()


def test_off_delivers_nothing_and_a_separate_deliver_process_does(db_backend: Backend, tmp_path: Path) -> None:
    server: DbServer = db_backend.server(tmp_path / "data",
                                         ["--event-delivery", "off", "--allow-private-event-destinations"])
    server.start()
    deliver = None
    try:
        assert server.proc is not None
        svc = service_path("evproc3")
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http, Receiver() as receiver:
            _subscribe(http, svc, receiver)
            version = _rotate(http, svc)
            time.sleep(1.5)  # several delivery polls' worth: a server that delivered would have by now
            assert receiver.posts() == []
            assert _children(server.proc.pid) == []
            env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
            env["TENANT_ACCESS_ALLOW_PRIVATE_EVENT_DESTINATIONS"] = "true"
            deliver = subprocess.Popen([sys.executable, "-m", "tenant_access", "events", "deliver",
                                        "--data-dir", str(server.data_dir), *server.database.args()], env=env)
            assert _until(lambda: version in _delivered_versions(receiver))
            deliver.send_signal(signal.SIGTERM)
            assert deliver.wait(15) == 0
    finally:
        if deliver is not None and deliver.poll() is None:
            deliver.kill()
            deliver.wait(5)
        server.stop()


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        frontier.append(int(child))
    return found


def test_workers_run_one_delivery_process_between_them(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "data", ["--workers", "2", "--allow-private-event-destinations"])
    server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid

        def delivering() -> list[int]:
            return [p for p in _descendants(pid) if CHILD in _cmdline(p)]

        assert _until(lambda: len(delivering()) == 1)
        time.sleep(1.0)  # a second worker starting its own would show by now
        assert len(delivering()) == 1
        svc = service_path("evproc4")
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http, Receiver() as receiver:
            _subscribe(http, svc, receiver)
            versions = [_rotate(http, svc) for _ in range(4)]  # over both workers
            assert _until(lambda: _delivered_versions(receiver) == versions)
    finally:
        server.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
