"""The cold path in figures the machine's noise does not move: instructions and fsyncs of a start.

``benchmarks/cold.py`` times starts with a wall clock, which a busy machine moves by a factor of
two; these counts show a change to the start between two commits even there:

- ``import``: instructions callgrind counts for ``python -c 'import tenant_access.cli'`` (and for
  ``python -c pass``, the interpreter's own start, to subtract);
- ``start``: instructions of ``tenant-access serve`` on a new data directory up to its first answer
  of ``GET /healthz`` (callgrind is told to dump its totals as soon as the answer is read, every
  thread counted);
- ``fsyncs``: the ``fsync``/``fdatasync`` calls of the same start up to its first answer, counted
  by ``strace -f``.

Run: ``.venv/bin/python -m benchmarks.cold_counts [--skip-start]`` (valgrind and strace needed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.run import ROOT, _free_port

#: A fixed hash seed: string hashing (and so dict and set layout) moves the counts by a few per cent.
ENV = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0",
       **{name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ}}
SYNCS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync")


def _collected(stderr: str) -> int:
    match = re.search(r"Collected\s*:\s*(\d+)", stderr)
    if not match:
        raise RuntimeError(f"callgrind did not report a total:\n{stderr[-2000:]}")
    return int(match[1])


def python_instructions(code: str) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                          code], capture_output=True, text=True, cwd=ROOT, check=True, timeout=600, env=ENV)
    return _collected(out.stderr)


def _serve(prefix: list[str], data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**ENV, "HOME": str(data_dir)}
    return subprocess.Popen([*prefix, sys.executable, "-m", "tenant_access", "serve", "--port", str(port),
                             "--data-dir", str(data_dir / "data"), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)


def _wait_for_answer(proc: subprocess.Popen[bytes], port: int, limit: float) -> None:
    began = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                response.read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() - began > limit:
                raise RuntimeError("the server did not answer") from None
            time.sleep(0.05)


def start_instructions() -> dict[str, int]:
    """Instructions of a start up to the first answer, every thread's (the totals callgrind dumps on
    request then), and the main thread's alone: the others (the token warm-up, the SQLite writer)
    run beside it, on another core when there is one, so the main thread's is the path's length."""
    with tempfile.TemporaryDirectory(prefix="tenant-access-coldcount-") as tmp:
        port = _free_port()
        out = Path(tmp) / "callgrind.out"
        proc = _serve(["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"],
                      Path(tmp), port)
        try:
            _wait_for_answer(proc, port, 300)
            subprocess.run(["callgrind_control", "--dump=first-answer", str(proc.pid)], check=True,
                           capture_output=True, timeout=60)
        finally:
            proc.terminate()
            proc.wait(60)
        figures = {"all_threads": 0, "main_thread": 0}
        for dump in Path(tmp).glob("callgrind.out*"):
            text = dump.read_text(errors="replace")
            if "first-answer" not in text:
                continue
            match = re.search(r"^summary:\s*(\d+)", text, re.M) or re.search(r"^totals:\s*(\d+)", text, re.M)
            if match:
                figures["all_threads"] += int(match[1])
                if re.search(r"^thread:\s*1$", text, re.M):
                    figures["main_thread"] += int(match[1])
        if not figures["all_threads"]:
            raise RuntimeError("no dump at the first answer")
        return figures


def _terminate_traced(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server strace runs (strace itself waits for it, SIGTERM or not), then strace."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    pids = children.read_text().split() if children.exists() else []
    for pid in pids:
        os.kill(int(pid), signal.SIGTERM)
    if not pids:
        proc.terminate()
    proc.wait(30)


def start_syncs() -> dict[str, int]:
    """fsync-like calls of a start up to its first answer, by name."""
    with tempfile.TemporaryDirectory(prefix="tenant-access-coldsync-") as tmp:
        port = _free_port()
        trace = Path(tmp) / "strace.out"
        proc = _serve(["strace", "-f", "-o", str(trace), "-e", "trace=" + ",".join(SYNCS)], Path(tmp), port)
        try:
            _wait_for_answer(proc, port, 60)
            time.sleep(0.2)  # strace writes each line as the call returns; let it catch up
            lines = trace.read_text().splitlines()
        finally:
            _terminate_traced(proc)
        counts = {name: sum(bool(re.search(rf"\b{name}\(", line)) and "resumed" not in line for line in lines)
                  for name in SYNCS}
        return {name: n for name, n in counts.items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-start", action="store_true", help="only the import figures")
    args = parser.parse_args()
    figures: dict[str, object] = {
        "python_pass": python_instructions("pass"),
        "import_cli": python_instructions("import tenant_access.cli"),
    }
    if not args.skip_start:
        figures["fsyncs_to_first_answer"] = start_syncs()
        figures["start_to_first_answer"] = start_instructions()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
