"""Where key material, version ids and entity tags come from.

Everything random here comes from :mod:`secrets`; nothing else in the code base makes keys.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hmac
import secrets
import time

KEY_BYTES = 64


def new_key() -> str:
    """A fresh access key: 64 random bytes, base64-encoded (88 characters), as Azure issues them."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def new_version_id() -> str:
    """An opaque, unique key-version id (24 hex characters, the shape of Azure's own ids)."""
    return ordered_id()


def ordered_id(at: _dt.datetime | None = None) -> str:
    """24 hex characters: the time in milliseconds (12), then 48 random bits (12).

    Unique like a random id, but a later id sorts after an earlier one, so a new row lands at the
    end of its table's index rather than on a random page of it: a commit rewrites one index page
    instead of one per row, and the write-ahead log and its checkpoints shrink accordingly. The
    time it shows is no secret: every record carries its creation time anyway.
    """
    millis = time.time_ns() // 1_000_000 if at is None else _millis(at)
    return f"{millis:012x}{secrets.token_hex(6)}"


def id_floor(at: _dt.datetime) -> str:
    """The smallest :func:`ordered_id` of the millisecond ``at``: every id made before it sorts below,
    so a time range becomes a range of the primary key (no index on time needed)."""
    return f"{max(0, _millis(at)):012x}" + "0" * 12


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MILLISECOND = _dt.timedelta(milliseconds=1)


def _millis(at: _dt.datetime) -> int:
    """Whole milliseconds since the epoch, in integers (a float timestamp can land a hair below the
    millisecond it is in); a naive time is taken as UTC."""
    return ((at if at.tzinfo is not None else at.replace(tzinfo=_dt.UTC)) - _EPOCH) // _MILLISECOND


def new_etag() -> str:
    """An opaque entity tag. Random rather than a counter, so a deleted and re-created
    configuration can never hand out a tag that an old client still holds."""
    return base64.b64encode(secrets.token_bytes(8)).decode("ascii")


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def same_secret(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison. Encodes first: ``hmac.compare_digest`` refuses non-ASCII ``str``."""
    a_bytes = a.encode("utf-8") if isinstance(a, str) else a
    b_bytes = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)
