"""How long audit records are kept, by kind: ``--audit-retention reads=90d,refusals=90d,changes=forever``.

The default keeps changes (rotations, configuration and service changes) forever and reads and
refusals 90 days: the change history is what an owner must be able to prove, and it grows only
as fast as people rotate keys; reads and refusals grow with traffic. Changes are removed only when
the operator writes a finite ``changes=`` themselves.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from tenant_access.domain.audit import AUDIT_KINDS, AuditKind

DEFAULT_RETENTION = "reads=90d,refusals=90d,changes=forever"
FOREVER = "forever"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d{1,7})([smhdw])$")


def parse_duration(text: str) -> _dt.timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``: a whole number and one unit."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (a whole number and one of s, m, h, d, w, e.g. 90d)")
    return _dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])


@dataclass(frozen=True, slots=True)
class Retention:
    """Per kind, how long a record is kept; ``None`` is forever."""

    changes: _dt.timedelta | None = None
    reads: _dt.timedelta | None = _dt.timedelta(days=90)
    refusals: _dt.timedelta | None = _dt.timedelta(days=90)

    @classmethod
    def parse(cls, text: str | None) -> Retention:
        """Kinds not named keep their default; each kind at most once; durations of at least a minute
        (a shorter one is almost certainly a typo that would empty the trail)."""
        values: dict[str, _dt.timedelta | None] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            name, sep, raw = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in AUDIT_KINDS:
                raise ValueError(f"audit retention: expected KIND=DURATION with KIND one of "
                                 f"{', '.join(AUDIT_KINDS)}, not {part.strip()!r}")
            if name in values:
                raise ValueError(f"audit retention: {name} given twice")
            raw = raw.strip().lower()
            duration = None if raw == FOREVER else parse_duration(raw)
            if duration is not None and duration < _dt.timedelta(minutes=1):
                raise ValueError(f"audit retention: {name}={raw} is under a minute")
            values[name] = duration
        default = cls()
        return cls(**{kind: values.get(kind, getattr(default, kind)) for kind in AUDIT_KINDS})

    def keep(self, kind: AuditKind) -> _dt.timedelta | None:
        value: _dt.timedelta | None = getattr(self, kind)
        return value

    def cutoffs(self, now: _dt.datetime) -> dict[AuditKind, _dt.datetime]:
        """For each kind with a finite retention, the time before which its records go."""
        return {kind: now - kept for kind in AUDIT_KINDS if (kept := self.keep(kind)) is not None}

    def describe(self) -> str:
        return ",".join(f"{kind}={_text(self.keep(kind))}" for kind in ("reads", "refusals", "changes"))


def _text(value: _dt.timedelta | None) -> str:
    if value is None:
        return FOREVER
    seconds = int(value.total_seconds())
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
