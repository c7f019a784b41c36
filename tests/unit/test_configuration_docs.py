"""docs/configuration.md names every setting, so a new one cannot ship undocumented."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from tenant_access.config import ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [f.name for f in fields(Settings) if f"`{ENV_PREFIX}{f.name.upper()}`" not in text]
    assert missing == []
