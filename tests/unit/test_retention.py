"""The --audit-retention syntax: what it accepts, what it refuses, and the defaults it keeps."""

from __future__ import annotations

import datetime as _dt

import pytest

from tenant_access.config import Settings
from tenant_access.domain.retention import DEFAULT_RETENTION, Retention

DAY = _dt.timedelta(days=1)


def test_the_default_keeps_changes_forever_and_reads_and_refusals_ninety_days() -> None:
    default = Retention.parse(DEFAULT_RETENTION)
    assert default == Retention() == Retention.parse("") == Settings().retention
    assert (default.changes, default.reads, default.refusals) == (None, 90 * DAY, 90 * DAY)
    now = _dt.datetime(2026, 12, 1, tzinfo=_dt.UTC)
    assert default.cutoffs(now) == {"reads": now - 90 * DAY, "refusals": now - 90 * DAY}
    assert default.describe() == "reads=90d,refusals=90d,changes=forever"


@pytest.mark.parametrize(("text", "expected"), [
    ("refusals=7d", Retention(refusals=7 * DAY)),
    ("reads=12h, refusals=30m", Retention(reads=_dt.timedelta(hours=12), refusals=_dt.timedelta(minutes=30))),
    ("changes=520w", Retention(changes=520 * 7 * DAY)),
    ("READS=Forever", Retention(reads=None)),
    ("changes=forever,reads=forever,refusals=forever", Retention(None, None, None)),
])
def test_kinds_not_named_keep_their_default(text: str, expected: Retention) -> None:
    assert Retention.parse(text) == expected


@pytest.mark.parametrize(("text", "complaint"), [
    ("changes", "KIND=DURATION"),
    ("writes=1d", "KIND=DURATION"),
    ("reads=1d,reads=2d", "given twice"),
    ("reads=soon", "not a duration"),
    ("reads=1.5d", "not a duration"),
    ("reads=-1d", "not a duration"),
    ("refusals=30s", "under a minute"),
])
def test_mistakes_are_refused_with_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Retention.parse(text)
    with pytest.raises(ValueError, match=complaint):
        Settings(audit_retention=text)
