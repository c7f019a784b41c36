"""The seed call with an event subscription active, beside the same server with none, and
(optionally) a server from another tree: the figure issue 15 bounds (within 10 % of the code
before events, with one subscription active).

The server is pinned to core 0 and ``wrk`` to core 1, as in :mod:`benchmarks.run`. The receiver
is a small asyncio process answering every delivery 200 (and the CloudEvents handshake), on core
1; the server's delivery process (``--event-delivery process``, the default) is moved to core 1
as well, where a deployment's scheduler would put it: the point of delivering from another
process is that it does not share the request process's core. Each configuration is measured
next to the raw disk loop (:mod:`benchmarks.disk_limit`), alternating, in rounds.

Run: ``.venv/bin/python -m benchmarks.events [--rounds 2] [--seconds 5] [--baseline PYTHON]``,
``--baseline`` naming the interpreter of another checkout (its own venv), run with no
subscription (for the code before events, which has none).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.disk_limit import commits_per_second
from benchmarks.run import API, BODY, Server, _free_port, lua, service_path, wrk

RECEIVER = textwrap.dedent('''
    import asyncio, sys
    OK = b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\n\\r\\n"
    HANDSHAKE = (b"HTTP/1.1 200 OK\\r\\nWebHook-Allowed-Origin: *\\r\\nAllow: POST\\r\\n"
                 b"content-length: 0\\r\\n\\r\\n")
    delivered = 0
    async def handle(reader, writer):
        global delivered
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                length = 0
                for line in head.split(b"\\r\\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /count"):  # the benchmark asks how many deliveries came
                    text = str(delivered).encode()
                    writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(text), text))
                    continue
                if head.startswith(b"POST"):
                    delivered += 1
                writer.write(HANDSHAKE if head.startswith(b"OPTIONS") else OK)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
        async with server:
            await server.serve_forever()
    asyncio.run(main())
''')


def _on_core_1(pid: int) -> None:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        subprocess.run(["taskset", "-a", "-p", "-c", "1", str(pid)], check=False, capture_output=True)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def _delivery_children(pid: int, *, expected: bool) -> list[int]:
    """The server's child processes (its event delivery process), waited for when this tree's
    server is measured: the child starts a second after the server (``START_DELAY``), and one that
    is not moved to core 1 competes with the request process for core 0."""
    deadline = time.monotonic() + (5.0 if expected else 0.0)
    while True:
        found = _children(pid)
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _delivered(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as answer:
        return int(answer.read())


def _drained(port: int, rotations: int, limit: float = 30.0) -> float | None:
    """Seconds after the load until the receiver has had every rotation's event (None: not within
    ``limit``). Each rotation has one event; the receiver counts every delivery (duplicates too)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if _delivered(port) >= rotations:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def measure(python: str, subscribed: bool, seconds: float, receiver_port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tenant-access-bench-events-") as tmp:
        data = Path(tmp)
        server = Server(data, args=["--allow-private-event-destinations"] if subscribed else [], python=python)
        server.start()
        try:
            for child in _delivery_children(server.proc.pid, expected=python == sys.executable):  # type: ignore[union-attr]
                _on_core_1(child)
            path = service_path("bench")
            server.call("PUT", f"{path}?{API}", BODY)
            if subscribed:
                server.call("PUT", f"{path}/eventSubscriptions/bench?{API}", {"properties": {
                    "destination": f"http://127.0.0.1:{receiver_port}/hook", "secret": "whsec_" + "A" * 32}})
            bearer = {"Authorization": f"Bearer {server.token()}"}
            script = lua([("POST", f"{path}/tenant/access/regenerateSecondaryKey?{API}", bearer)])
            base = _delivered(receiver_port) if subscribed else 0  # the receiver serves every run
            rotations = wrk(server.url, connections=8, seconds=1, script=script).requests  # warm-up
            figures: dict[str, Any] = {}
            for connections in (1, 8):
                disk = commits_per_second(data, None, min(seconds, 3))
                before = _delivered(receiver_port)
                res = wrk(server.url, connections=connections, seconds=seconds, script=script)
                rotations += res.requests
                figures[str(connections)] = {"rps": res.rps, "p99_ms": res.p99_ms, "errors": res.errors,
                                             "disk": disk, "x_disk": res.rps / disk}
                if subscribed:
                    # Deliveries must keep up: a rate bought by letting events pile up is no rate.
                    figures[str(connections)]["delivered_per_s"] = (_delivered(receiver_port) - before) / seconds
                    figures[str(connections)]["drained_after_s"] = _drained(receiver_port, base + rotations)
            return figures
        finally:
            server.stop()


def _keeping_up(figures: dict[str, Any]) -> str:
    if "delivered_per_s" not in figures:
        return ""
    drained = figures["drained_after_s"]
    return (f", delivered {figures['delivered_per_s']:,.0f}/s, all delivered "
            + ("not within 30 s" if drained is None else f"{drained:.2f} s after"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--baseline", help="the python of another checkout, measured with no subscription")
    args = parser.parse_args()
    port = _free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    _on_core_1(receiver.pid)
    time.sleep(0.5)
    runs: list[tuple[str, str, bool]] = [("this tree, no subscription", sys.executable, False),
                                         ("this tree, one subscription", sys.executable, True)]
    if args.baseline:
        runs.insert(0, ("baseline", args.baseline, False))
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in runs}
    try:
        for _ in range(args.rounds):
            for label, python, subscribed in runs:
                figures = measure(python, subscribed, args.seconds, port)
                results[label].append(figures)
                print(f"{label:<30} " + "  ".join(
                    f"{c} conn {f['rps']:7,.0f}/s (disk {f['disk']:6,.0f}, x{f['x_disk']:.2f}, "
                    f"p99 {f['p99_ms']:.1f} ms, errors {f['errors']}{_keeping_up(f)})"
                    for c, f in figures.items()), flush=True)
    finally:
        receiver.terminate()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
