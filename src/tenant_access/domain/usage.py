"""Key usage as the API shows it: per slot, the current key version and how it has been used.

The anchor is IAM's access-key-last-used (``GetAccessKeyLastUsed``): a last-used time (here to
the minute) or none, plus what two alternating keys add: a use count, and for how long a key has
been unused, which is what decides whether it may be regenerated safely.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from tenant_access.domain.models import AccessConfig, KeySlot


@dataclass(frozen=True, slots=True)
class SlotUsage:
    slot: KeySlot
    version_id: str
    created_at: _dt.datetime
    last_used: _dt.datetime | None
    uses: int
    #: When the key stops being accepted (a rotation policy's ``expiryTime``); None: never.
    expires_at: _dt.datetime | None = None

    def unused_for(self, now: _dt.datetime) -> _dt.timedelta:
        """Since the last use, or since the key was made when it was never used."""
        return max(_dt.timedelta(0), now - (self.last_used or self.created_at))

    def used_within(self, window: _dt.timedelta, now: _dt.datetime) -> bool:
        """Whether a use falls within ``window`` before ``now``. Uses are kept to the minute, so a
        use in the minute that the window starts in counts as inside it (the safe side)."""
        return self.last_used is not None and self.last_used + _dt.timedelta(minutes=1) > now - window


@dataclass(frozen=True, slots=True)
class KeyUsage:
    config: AccessConfig
    keys: tuple[SlotUsage, SlotUsage]
    #: The server's now (the moved clock in emulator mode) when this was read.
    as_of: _dt.datetime
    #: How often replicas write their counts: figures may be this much behind other replicas' uses.
    flush_seconds: float

    def slot(self, slot: KeySlot) -> SlotUsage:
        return self.keys[0] if slot is KeySlot.PRIMARY else self.keys[1]
