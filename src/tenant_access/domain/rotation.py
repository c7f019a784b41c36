"""Safe manual rotation: refuse to regenerate a key that clients still use (``?ifUnusedFor=``).

The check runs inside the store's transaction, on the version that is about to be replaced, with
usage read just before it (this replica's unwritten counts included). Usage from other replicas
may be up to one flush interval behind: a caller that needs certainty across replicas asks for a
window longer than that (the documented ``PT15M`` is 900 times the default flush interval).
"""

from __future__ import annotations

import datetime as _dt

from tenant_access.clock import format_duration, iso
from tenant_access.domain.errors import Conflict, FieldError
from tenant_access.domain.models import KeySlot, Secrets
from tenant_access.domain.usage import KeyUsage

#: The longest window a caller may ask for (the OpenAPI pattern allows no more).
MAX_WINDOW = _dt.timedelta(days=50 * 365)


def check_unused(current: Secrets, slot: KeySlot, usage: KeyUsage, window: _dt.timedelta,
                 now: _dt.datetime) -> None:
    """:class:`Conflict` (409, naming the last use) when the ``slot`` key was used within ``window``."""
    seen = usage.slot(slot)
    if seen.version_id != current.config.version_id(slot):
        raise Conflict(f"The {slot.value} key was regenerated while its use was being checked; retry.",
                       target=f"{slot.value}Key")
    if seen.used_within(window, now):
        assert seen.last_used is not None
        raise Conflict(
            f"The {slot.value} key was last used at {iso(seen.last_used)}, within the last "
            f"{format_duration(window)}: move its clients to the {slot.other.value} key and retry once it has "
            f"been unused that long (ifUnusedFor).",
            details=[FieldError("lastUsedAt", iso(seen.last_used)), FieldError("query.ifUnusedFor",
                                                                                format_duration(window))],
            target=f"{slot.value}Key",
        )
