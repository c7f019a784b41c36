"""Schema migrations: numbered SQL files, applied in order, each in its own transaction.

The files are portable SQL so that the SQLite and PostgreSQL schemas can never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load() -> list[Migration]:
    folder = resources.files("tenant_access.storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], tuple(_split(text))))
    return sorted(found, key=lambda m: m.version)


def _split(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in body.split(";") if part.strip()]


class SchemaOutOfDate(RuntimeError):
    """Raised at start-up when migrating at start is off and the schema lacks migrations."""
