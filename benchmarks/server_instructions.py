"""Instructions per rotation in the server process, with 0 or 1 event subscription: what events
cost the request path, counted by callgrind on the real server (``--trace-children=no``: a delivery
child process, with ``--event-delivery process``, is not counted; with ``inline`` the delivery work
is, since it runs in the server process).

The server runs under ``valgrind --tool=callgrind`` (``--auth none``, no emulator controls, SQLite,
``--log-level warning``); a receiver (``tests.events.receiver``, a threaded HTTP server answering
200) runs in another process on loopback. After a warm-up, the counters are zeroed
(``callgrind_control -z``), ``--count`` rotations (``regenerateSecondaryKey`` on one configuration,
one at a time, one keep-alive connection) are sent, the driver waits until the receiver has every
event of them (with a subscription) and ``--settle`` seconds more, and the counters are dumped
(``callgrind_control -d``): the figure is that total over ``count``, so it includes what the server
does meanwhile when idle (polls) at valgrind's slowed pace; ``--idle`` seconds measured the same way
with no request give that idle cost per second on its own, and ``per_rotation_less_idle`` takes
it out (the idle rate times the measured span).

Run: ``.venv/bin/python -m benchmarks.server_instructions [--subscriptions 0|1] [--count 300]
[--idle 10] [-- extra serve flags]``; to measure the server of another tree, name its interpreter
in ``BENCH_PYTHON`` (``BENCH_PYTHON=/path/to/tree/.venv/bin/python``; the driver stays this one).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/" \
          "Microsoft.ApiManagement/service/bench"
API = {"api-version": "2024-05-01"}
BODY = {"location": "westeurope", "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@example.com", "publisherName": "b"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout:g} s")


def _received(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.strip()) if log.exists() else 0


def _counted(pid: int, out: str, action: str) -> int:
    """``callgrind_control -z`` (zero, answers 0) or ``-d`` (dump, answers the dump's total)."""
    before = set(glob.glob(out + "*"))
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True, timeout=300)
    if action == "-z":
        return 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for path in sorted(set(glob.glob(out + "*")) - before):
            text = Path(path).read_text(errors="replace")
            match = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
            if match:
                return int(match[1])
        time.sleep(0.2)
    raise SystemExit("callgrind wrote no dump")


def measure(python: str, count: int, subscriptions: int, idle: float, settle: float,
            extra: list[str]) -> dict[str, float]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    with tempfile.TemporaryDirectory(prefix="tenant-access-srvinstr-") as tmp:
        log = Path(tmp) / "received.jsonl"
        receiver_port, port = _free_port(), _free_port()
        receiver = subprocess.Popen([python, "-m", "tests.events.receiver", str(receiver_port), "0", str(log)],
                                    cwd=ROOT)
        out = str(Path(tmp) / "callgrind.out")
        flags = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(Path(tmp) / "data"), "--auth", "none",
                 "--no-emulator-controls", "--log-level", "warning", *extra]
        if subscriptions:
            flags.append("--allow-private-event-destinations")
        server = subprocess.Popen(["valgrind", "--tool=callgrind", "--trace-children=no",
                                   f"--callgrind-out-file={out}", python, "-m", "tenant_access", "serve", *flags],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_port(receiver_port, 30)
            _wait_port(port, 600)
            return _run(f"http://127.0.0.1:{port}", server.pid, out, log, receiver_port, count, subscriptions,
                        idle, settle)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
            receiver.kill()
            receiver.wait(10)


def _run(url: str, pid: int, out: str, log: Path, receiver_port: int, count: int, subscriptions: int,
         idle: float, settle: float) -> dict[str, float]:
    """Set up, warm up, then the idle span and the measured rotations (see the module's docstring)."""
    with httpx.Client(base_url=url, params=API, timeout=600) as http:
        http.put(SERVICE, json=BODY).raise_for_status()
        http.patch(f"{SERVICE}/tenant/access", json={"properties": {"enabled": True}},
                   headers={"if-match": "*"}).raise_for_status()
        for n in range(subscriptions):
            http.put(f"{SERVICE}/eventSubscriptions/bench{n}", json={"properties": {
                "destination": f"http://127.0.0.1:{receiver_port}/hook"}}).raise_for_status()
        sent = 0

        def rotate(times: int) -> None:
            nonlocal sent
            for _ in range(times):
                http.post(f"{SERVICE}/tenant/access/regenerateSecondaryKey").raise_for_status()
            sent += times
            deadline = time.monotonic() + 600
            while subscriptions and _received(log) < sent and time.monotonic() < deadline:
                time.sleep(0.2)  # every event of these rotations delivered
            time.sleep(settle)

        rotate(50)  # warm-up
        figures: dict[str, float] = {}
        if idle:
            _counted(pid, out, "-z")
            time.sleep(idle)
            figures["idle_per_second"] = round(_counted(pid, out, "-d") / idle)
        _counted(pid, out, "-z")
        started = time.monotonic()
        rotate(count)
        total = _counted(pid, out, "-d")
        elapsed = time.monotonic() - started
        figures["per_rotation"] = round(total / count)
        if idle:  # less what the server would have done idle for as long (polls, timers)
            figures["per_rotation_less_idle"] = round((total - figures["idle_per_second"] * elapsed) / count)
        figures["seconds"] = round(elapsed, 1)
        figures["received"] = _received(log)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--subscriptions", type=int, choices=(0, 1), default=0)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured on their own (0: none)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds waited after the last delivery")
    parser.add_argument("extra", nargs="*", help="more serve flags (after --)")
    args = parser.parse_args()
    figures = measure(os.environ.get("BENCH_PYTHON", sys.executable), args.count, args.subscriptions, args.idle,
                      args.settle, args.extra)
    print(json.dumps({"subscriptions": args.subscriptions, "serve_flags": args.extra, **figures}))


if __name__ == "__main__":
    main()
