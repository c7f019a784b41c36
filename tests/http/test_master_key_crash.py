"""A master-key rotation killed with SIGKILL anywhere, then run again, loses nothing and finishes the
same rotation (issue 12, defect 1).

The store has 2,000 services (8,000 key versions), built once through the store API and copied for
each crash point. The rotation runs as a real ``tenant-access`` process; the test follows its
progress lines on standard error and kills it right after the chosen one, so the crash points are
spread over the whole run: the verification before any change, each file write of the new key,
the re-encryption batches and the final verification. SQLite only: the copy per crash point is a
file copy (the re-encryption code shared with PostgreSQL runs in tests/http/test_master_key.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenant_access.security.encryption import MasterKey
from tests.conftest import API
from tests.keystore import all_keys, build, census, clean_env, cli, service_ref
from tests.serverproc import ServerProcess

SERVICES = 2000
CRASH_POINTS = 24
_PROGRESS = re.compile(r"re-encrypting keys: (\d+)/(\d+)")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("rotation-template") / "data"
    build(data_dir, SERVICES)
    return data_dir


@pytest.fixture(scope="module")
def plaintexts(template: Path) -> dict[tuple[int, str], tuple[str, str]]:
    return all_keys(template, 20)


def _copy(template: Path, to: Path) -> Path:
    shutil.copytree(template, to)
    return to


def _lines(proc: subprocess.Popen[bytes]) -> Iterator[str]:
    """Standard error line by line as it arrives (``\\r``-separated progress counts as lines too)."""
    assert proc.stderr is not None
    pending = b""
    while True:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        pending += chunk
        *complete, pending = re.split(rb"[\r\n]", pending)
        yield from (line.decode() for line in complete if line)
    if pending:
        yield pending.decode()


def _rotate_until(data_dir: Path, stop: object) -> list[str]:
    """Run ``rotate-master-key``; SIGKILL it as soon as ``stop(index, line)`` is true. Answers the
    lines read (all of them when it ran to the end)."""
    proc = subprocess.Popen([sys.executable, "-m", "tenant_access", "rotate-master-key", "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    seen: list[str] = []
    try:
        for line in _lines(proc):
            seen.append(line)
            if stop(len(seen), line):  # type: ignore[operator]
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
    return seen


def _serve_and_check(data_dir: Path, plaintexts: dict[tuple[int, str], tuple[str, str]]) -> None:
    """The real server starts on the store and lists the same keys as before the rotation."""
    server = ServerProcess(data_dir).start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            for (i, name), (primary, secondary) in plaintexts.items():
                ref = service_ref(i)
                url = (f"/subscriptions/{ref.subscription_id}/resourceGroups/{ref.resource_group}/providers/"
                       f"Microsoft.ApiManagement/service/{ref.name}/tenant/{name}/listSecrets?{API}")
                answer = http.post(url)
                assert answer.status_code == 200, answer.text
                assert (answer.json()["data"]["primary_key"], answer.json()["data"]["secondary_key"]) == \
                    (primary, secondary)
    finally:
        server.stop()


def test_an_interrupted_rotation_run_again_loses_no_key(
        template: Path, plaintexts: dict[tuple[int, str], tuple[str, str]], tmp_path: Path) -> None:
    """The reported defect: killed at about 10 % of the re-encryption, then run again."""
    data_dir = _copy(template, tmp_path / "data")

    def at_ten_percent(_: int, line: str) -> bool:
        match = _PROGRESS.search(line)
        return match is not None and int(match[1]) * 10 >= int(match[2])

    seen = _rotate_until(data_dir, at_ten_percent)
    assert _PROGRESS.search(seen[-1]), seen  # it was killed mid-way, not after finishing
    again = cli("rotate-master-key", "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert all_keys(data_dir, SERVICES)  # every key version decrypts (and authenticates)
    _serve_and_check(data_dir, plaintexts)


def test_rotation_killed_anywhere_then_run_again_finishes_the_same_rotation(
        template: Path, plaintexts: dict[tuple[int, str], tuple[str, str]], tmp_path: Path) -> None:
    keys_dir = "master-keys"
    original = (template / keys_dir / "current").read_text().strip()
    reference = _rotate_until(_copy(template, tmp_path / "reference"), lambda i, line: False)
    total = len(reference)
    assert total > 60, reference  # a line per verification and re-encryption batch, and per file step
    file_steps = [i for i, line in enumerate(reference, 1) if "pending.key" in line or line.startswith(("wrote ",
                  "master key "))]
    assert len(file_steps) == 3, reference
    spread = {1 + round(n * (total - 2) / (CRASH_POINTS - 1)) for n in range(CRASH_POINTS)}
    points = sorted(spread | set(file_steps) | {file_steps[0] - 1})
    assert len(points) >= 20
    states: set[tuple[bool, bool]] = set()
    last = tmp_path
    for point in points:
        data_dir = _copy(template, tmp_path / f"crash-{point}")
        keys = data_dir / keys_dir
        _rotate_until(data_dir, lambda i, line, point=point: i >= point)
        pending_file = keys / "pending.key"
        pending = MasterKey.from_base64(pending_file.read_text()).id if pending_file.exists() else None
        crashed_current = (keys / "current").read_text().strip()
        states.add((pending is not None, crashed_current != original))

        again = cli("master-key", "rotate", "--data-dir", str(data_dir))
        assert again.returncode == 0, (point, again.stdout, again.stderr)
        final = (keys / "current").read_text().strip()
        if pending is not None:  # the crashed run had begun a new key: the re-run finishes with that one
            assert f"resuming the interrupted rotation to master key {pending}" in again.stdout, (point, again.stdout)
            assert final == pending
            expected = {original, final}
        elif crashed_current != original:  # it was killed after its last step: that rotation was complete
            assert "new master key" in again.stdout, (point, again.stdout)
            expected = {original, crashed_current, final}
        else:  # killed before it wrote anything
            assert "new master key" in again.stdout, (point, again.stdout)
            expected = {original, final}
        assert final != original, point
        left = {p.name for p in keys.iterdir() if p.name != ".lock"}  # no temporary file survives the re-run
        assert left == {f"{k}.key" for k in expected} | {"current"}, point
        found, current = census(data_dir)
        assert current == final
        assert found.complete(final) and found.total == 4 * SERVICES + 1, (point, found)
        last = data_dir
    # Crashes landed before the new key existed, while it was pending, and after it became current.
    assert {(False, False), (True, False), (True, True)} <= states, states
    _serve_and_check(last, plaintexts)


def test_a_server_keeps_answering_and_writing_while_the_keys_move(
        template: Path, plaintexts: dict[tuple[int, str], tuple[str, str]], tmp_path: Path) -> None:
    """listSecrets and regenerations keep succeeding during a rotation; a key written under the old
    master key by a server that had not yet noticed the new one is moved too (the rotation checks
    again at the end), so the rotation ends complete."""
    data_dir = _copy(template, tmp_path / "data")
    server = ServerProcess(data_dir).start()
    stop, failures, counts = threading.Event(), [], {"reads": 0, "writes": 0}
    sample = list(plaintexts.items())[:10]

    def url(i: int, name: str, action: str) -> str:
        ref = service_ref(i)
        return (f"/subscriptions/{ref.subscription_id}/resourceGroups/{ref.resource_group}/providers/"
                f"Microsoft.ApiManagement/service/{ref.name}/tenant/{name}/{action}?{API}")

    def load() -> None:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            while not stop.is_set():
                for (i, name), (primary, _) in sample:
                    answer = http.post(url(i, name, "listSecrets"))
                    if answer.status_code != 200 or answer.json()["data"]["primary_key"] != primary:
                        failures.append(answer.text)
                    counts["reads"] += 1
                answer = http.post(url(SERVICES - 1, "access", "regenerateSecondaryKey"))
                if answer.status_code != 200:
                    failures.append(answer.text)
                counts["writes"] += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        rotated = cli("master-key", "rotate", "--data-dir", str(data_dir))
    finally:
        stop.set()
        worker.join(30)
        server.stop()
    assert rotated.returncode == 0, rotated.stderr
    assert failures == []
    assert counts["reads"] >= 10 and counts["writes"] >= 1, counts
    found, current = census(data_dir)
    assert found.complete(current), found
