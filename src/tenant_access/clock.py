"""The server's one notion of "now" for key lifecycle: policies, expiry, key usage and the expiry
of shared access signatures all read it here.

Real time by default. In emulator mode ``/_emulator/clock`` moves it (set, or advance by an ISO 8601
duration), so that a 90-day rotation policy can be tested in milliseconds, by our tests and by our
users' tests of their rotation code. Only an offset is kept: the moved clock keeps ticking at the
real rate, and reading it costs one addition on the request path. Bearer tokens, rate limits,
deadlines and log timestamps stay on real time: they are about the network, not about keys.
"""

from __future__ import annotations

import datetime as _dt
import re

_ZERO = _dt.timedelta(0)


class Clock:
    """Real time plus an offset that only the emulator controls change (on the event loop)."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = _ZERO

    def now(self) -> _dt.datetime:
        if self.offset:
            return _dt.datetime.now(_dt.UTC) + self.offset
        return _dt.datetime.now(_dt.UTC)

    @property
    def moved(self) -> bool:
        return bool(self.offset)

    def set(self, when: _dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("the time must carry a time zone")
        self.offset = when - _dt.datetime.now(_dt.UTC)

    def advance(self, by: _dt.timedelta) -> None:
        self.offset += by

    def reset(self) -> None:
        self.offset = _ZERO

    def describe(self) -> dict[str, object]:
        return {"now": iso(self.now()), "offset_seconds": round(self.offset.total_seconds(), 3),
                "moved": self.moved}


#: A process-wide default, for code built without an app (the CLI's direct database commands).
SYSTEM = Clock()


def iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.ASCII,
)
#: Calendar units as fixed lengths: a policy period is a length of time, not a calendar date
#: (Key Vault documents ``P1Y``/``P3M`` the same way in practice). Documented in docs/rotation.md.
DAYS_PER_YEAR = 365
DAYS_PER_MONTH = 30
MAX_DURATION = _dt.timedelta(days=100 * DAYS_PER_YEAR)


def parse_duration(text: str) -> _dt.timedelta:
    """An ISO 8601 duration (``P90D``, ``PT15M``, ``P1Y2M``, ``P2W``) as a length of time; a year is
    365 days and a month 30. ``ValueError`` (with a readable message) for anything else."""
    if not isinstance(text, str):
        raise ValueError("must be an ISO 8601 duration such as P90D or PT15M")
    match = _DURATION.fullmatch(text.strip().upper())
    if match is None or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 duration such as P90D or PT15M")
    parts = {k: float(v) if k == "seconds" else int(v) for k, v in match.groupdict().items() if v is not None}
    if len(text) > 40 or any(v > 10**6 for v in parts.values()):
        raise ValueError("the duration is too long")
    days = (parts.get("years", 0) * DAYS_PER_YEAR + parts.get("months", 0) * DAYS_PER_MONTH
            + parts.get("weeks", 0) * 7 + parts.get("days", 0))
    delta = _dt.timedelta(days=days, hours=parts.get("hours", 0), minutes=parts.get("minutes", 0),
                          seconds=parts.get("seconds", 0))
    if delta > MAX_DURATION:
        raise ValueError("the duration is longer than 100 years")
    return delta


def format_duration(delta: _dt.timedelta) -> str:
    """The shortest ISO 8601 spelling in days, hours, minutes and seconds (``P90D``, ``PT15M``)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "PT0S"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return text + ("T" + clock if clock else "")
