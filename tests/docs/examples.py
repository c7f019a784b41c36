"""The fenced examples of README.md and docs/*.md, and which of them a reader can run as pasted.

Rules (also in docs/testing.md, "The documentation's examples are tested"):

* a block whose info string is ``sh``, ``bash`` or ``shell`` is a shell example, ``python`` or
  ``py`` a Python example; blocks of any other kind (``json``, ``yaml``, none) are not code;
* an example is runnable unless the line before its fence (blank lines aside) is
  ``<!-- not-runnable: REASON -->`` (a reason is required) or ``<!-- file: NAME -->`` (a file of a
  project of its own, run by tests/testing/test_docs.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL = frozenset({"sh", "bash", "shell"})
PYTHON = frozenset({"python", "py"})
_FENCE = re.compile(r"^```(?P<info>[^`\s]*)")
_NOT_RUNNABLE = re.compile(r"^<!-- not-runnable: (?P<reason>\S.*?) -->$")
_FILE = re.compile(r"^<!-- file: [\w.]+ -->$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  #: 1-based line of the first line of code (the one after the fence)
    kind: str  #: "shell" or "python"
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The shell and Python blocks of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        info = match["info"].lower()
        kind = "shell" if info in SHELL else "python" if info in PYTHON else None
        if kind is not None:
            found.append(Block(path, i + 2, kind, "\n".join(lines[i + 1:end]) + "\n", _skip_reason(lines, i)))
        i = end + 1
    return found


def _skip_reason(lines: list[str], fence: int) -> str | None:
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0:
        return None
    marker = lines[before].strip()
    if (match := _NOT_RUNNABLE.match(marker)) is not None:
        return match["reason"]
    if _FILE.match(marker):
        return "a file of its own project, run by tests/testing/test_docs.py"
    return None
