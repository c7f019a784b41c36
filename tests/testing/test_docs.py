"""The example of docs/testing.md, run exactly as printed, as a user's project would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_FILE_BLOCK = re.compile(r"<!-- file: (?P<name>[\w.]+) -->\n```python\n(?P<code>.*?)\n```", re.DOTALL)


def test_the_documented_rotation_tests_pass_in_a_project_of_their_own(tmp_path: Path) -> None:
    files = {m["name"]: m["code"] + "\n" for m in _FILE_BLOCK.finditer(DOC.read_text(encoding="utf-8"))}
    assert set(files) == {"rotate_keys.py", "test_rotate_keys.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANT_ACCESS_", "PYTEST_"))}
    # Nothing but the installed package: the fixture and the marker come from its entry point.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
         "-W", "error::ResourceWarning", "-W", "error::pytest.PytestUnraisableExceptionWarning",
         "-W", "error::pytest.PytestUnhandledThreadExceptionWarning", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout
