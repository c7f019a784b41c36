"""Every setting in one place: its flag, its environment variable, its default.

The CLI builds a :class:`Settings` from flags, falling back to ``TENANT_ACCESS_*`` variables and
then to the defaults below; nothing else reads the environment. ``docs/configuration.md`` is the
user-facing copy of this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "TENANT_ACCESS_"
API_STYLES = ("seed", "azure")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tenant-access"


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (loopback by default)"})
    port: int = field(default=8700, metadata={"help": "TCP port; 0 picks a free one and prints it"})
    data_dir: Path = field(default_factory=default_data_dir,
                           metadata={"help": "where the SQLite file (and later keys, certificates) live"})
    database_url: str | None = field(default=None,
                                     metadata={"help": "database URL; default: SQLite file in the data dir"})
    api_style: str = field(default="seed", metadata={"help": "wire format: seed (default) or azure"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    max_body_bytes: int = field(default=64 * 1024, metadata={"help": "largest accepted request body"})

    def __post_init__(self) -> None:
        if self.api_style not in API_STYLES:
            raise ValueError(f"api style must be one of {', '.join(API_STYLES)}, not {self.api_style!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TENANT_ACCESS_*`` variables, then explicit (non-None) overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def _convert(kind: Any, raw: str) -> Any:
    text = str(kind)
    if "int" in text:
        return int(raw)
    if "Path" in text:
        return Path(raw).expanduser()
    return raw
