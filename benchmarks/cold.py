"""Cold paths: start to first answer, and the first calls after start, over several starts.

Run: ``.venv/bin/python -m benchmarks.cold [--starts 12]``. Each start is a new server process
on a new data directory (strict authentication, SQLite with ``synchronous=FULL`` semantics, the
master keyring made at start), as a test rig starts it: the time from ``exec`` to the first
answer of ``GET /healthz`` (polled every 2 ms), then the first call (a ``PUT`` that creates a
service: a durable write over a new connection) and the first seed call after it
(``regenerateSecondaryKey``). The client's own first use of urllib is warmed beforehand. Medians
and ranges are printed and written to ``benchmarks/results/cold-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run import API, BODY, ROOT, Server, service_path, warm_client


def one_start() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tenant-access-cold-") as tmp:
        server = Server(Path(tmp)).start()
        try:
            path = service_path("cold")
            server.token()
            began = time.perf_counter()
            server.call("PUT", f"{path}?{API}", BODY)
            first_call = time.perf_counter() - began
            began = time.perf_counter()
            server.call("POST", f"{path}/tenant/access/regenerateSecondaryKey?{API}")
            seed = time.perf_counter() - began
            return {"start_s": server.started_in, "first_call_ms": first_call * 1000, "first_seed_call_ms": seed * 1000}
        finally:
            server.stop()


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {name: {"median": statistics.median(r[name] for r in runs), "min": min(r[name] for r in runs),
                   "max": max(r[name] for r in runs)} for name in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=12)
    args = parser.parse_args()
    warm_client()
    runs = [one_start() for _ in range(args.starts)]
    out = {"starts": args.starts, "summary": summary(runs), "runs": runs}
    print(json.dumps(out["summary"], indent=2))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (results / f"cold-{stamp}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
