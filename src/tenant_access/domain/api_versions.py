"""Which ``api-version`` values each operation accepts.

The set is the specification history of the tenant-access and service operations (2016-07-07 on,
previews included). A well-formed version newer than the newest one we know is served with the
newest behaviour instead of being refused: a new SDK release must keep working against an older
server, which is the complaint users most often have about emulators that pin versions.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from tenant_access.domain.errors import FieldError, ValidationFailed

STABLE = (
    "2016-07-07", "2016-10-10", "2017-03-01", "2018-01-01", "2019-01-01", "2019-12-01",
    "2020-12-01", "2021-08-01", "2022-08-01", "2024-05-01",
)
PREVIEW = (
    "2018-06-01-preview", "2019-12-01-preview", "2020-06-01-preview", "2021-01-01-preview",
    "2021-04-01-preview", "2021-12-01-preview", "2022-04-01-preview", "2022-09-01-preview",
    "2023-03-01-preview", "2023-05-01-preview", "2023-09-01-preview", "2024-06-01-preview",
    "2024-10-01-preview", "2025-03-01-preview", "2025-09-01-preview", "2026-09-01-preview",
)
KNOWN: frozenset[str] = frozenset(STABLE + PREVIEW)
NEWEST_STABLE = "2024-05-01"

#: ASCII digits only (``\d`` would take any script's), matched whole (``fullmatch``).
_FORMAT = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:-(preview|alpha|beta|rc|privatepreview))?$")

#: The first version in which each operation appears in the specification.
FIRST_VERSION: dict[str, str] = {
    "services.create_or_update": "2016-07-07",
    "services.get": "2016-07-07",
    "services.delete": "2016-07-07",
    "services.list": "2016-07-07",
    "services.list_by_subscription": "2016-07-07",
    "access.get": "2016-10-10",
    "access.update": "2016-10-10",
    "access.regenerate_primary_key": "2016-10-10",
    "access.regenerate_secondary_key": "2016-10-10",
    "access.git_regenerate_primary_key": "2016-10-10",
    "access.git_regenerate_secondary_key": "2016-10-10",
    "access.get_entity_tag": "2019-01-01",
    "access.list_secrets": "2019-12-01",
    "access.list": "2020-12-01",
    "access.create": "2020-12-01",
    # Our extension; it takes the same versions as the operations it reports on.
    "audit.list": "2016-10-10",
    "access.key_usage": "2016-10-10",
    "access.rotation_policy.get": "2016-10-10",
    "access.rotation_policy.put": "2016-10-10",
    "access.rotation_policy.delete": "2016-10-10",
    "events.subscriptions.list": "2016-10-10",
    "events.subscriptions.create_or_update": "2016-10-10",
    "events.subscriptions.get": "2016-10-10",
    "events.subscriptions.delete": "2016-10-10",
    "events.subscriptions.deliveries": "2016-10-10",
}


def _date_of(version: str) -> _dt.date | None:
    match = _FORMAT.fullmatch(version)
    if match is None:
        return None
    try:
        return _dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


_NEWEST_DATE = max(d for d in (_date_of(v) for v in KNOWN) if d is not None)
#: What a caller gets when it asks for a well-formed version newer than every one we know.
NEWEST_KNOWN = max(sorted(KNOWN), key=lambda v: (_date_of(v), not v.endswith("preview")))
_FIELD = "query.api-version"


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """The version a caller asked for, and the one whose behaviour it gets."""

    requested: str
    served: str

    @property
    def is_fallback(self) -> bool:
        return self.requested != self.served


def resolve(raw: str | None, operation: str) -> ApiVersion:
    """Check ``raw`` for ``operation``; raise :class:`ValidationFailed` naming the query parameter.

    Accepted answers are remembered (a handful of versions times a few operations), because every
    request asks the same question."""
    key = (raw, operation)
    known = _ACCEPTED.get(key)
    if known is not None:
        return known
    answer = _resolve(raw, operation)
    if len(_ACCEPTED) < 4096:
        _ACCEPTED[key] = answer
    return answer


_ACCEPTED: dict[tuple[str | None, str], ApiVersion] = {}


def _resolve(raw: str | None, operation: str) -> ApiVersion:
    if raw is None or raw == "":
        raise ValidationFailed(
            "The api-version query parameter (?api-version=) is required for all requests.",
            details=[FieldError(_FIELD, "required")],
            azure_code="MissingApiVersionParameter",
            target="api-version",
        )
    when = _date_of(raw)
    if when is None:
        if _FORMAT.fullmatch(raw) is None:
            raise _invalid(raw, "must look like YYYY-MM-DD or YYYY-MM-DD-preview")
        raise _invalid(raw, f"{raw[:10]} is not a calendar date")
    first = FIRST_VERSION[operation]
    if raw in KNOWN:
        first_date = _date_of(first)
        assert first_date is not None
        if when < first_date:
            raise _invalid(raw, f"this operation exists from api-version {first} on")
        return ApiVersion(raw, raw)
    if when > _NEWEST_DATE:
        return ApiVersion(raw, NEWEST_KNOWN)
    raise _invalid(raw, "not a known api-version; " + _nearest(when, operation))


def _nearest(when: _dt.date, operation: str) -> str:
    """The known versions just before and just after ``when``: a near-miss is usually a typo of
    one of them, and naming them saves a trip to the specification."""
    dated = [(d, v) for v in supported_for(operation) if (d := _date_of(v)) is not None]
    before = [v for d, v in sorted(dated) if d < when][-1:]
    after = [v for d, v in sorted(dated) if d > when][:1]
    return "the nearest known are " + " and ".join(before + after)


def well_formed(raw: str | None) -> str:
    """An api-version of an operation that is not API Management's (Resource Manager's own
    subscriptions, tenants and cloud metadata): required and well-formed, and otherwise any, since
    every version of those operations answers in the shapes served here."""
    if raw is None or raw == "":
        return _resolve(raw, "services.get").requested  # raises MissingApiVersionParameter
    if _FORMAT.fullmatch(raw) is None:
        raise _invalid(raw, "must look like YYYY-MM-DD or YYYY-MM-DD-preview")
    return raw


#: What :func:`well_formed` accepts, for the OpenAPI documents.
WELL_FORMED_PATTERN = _FORMAT.pattern


def supported_for(operation: str) -> list[str]:
    first = _date_of(FIRST_VERSION[operation])
    assert first is not None
    return sorted(v for v in KNOWN if (_date_of(v) or first) >= first)


def _invalid(raw: str, reason: str) -> ValidationFailed:
    shown = raw if len(raw) <= 40 and raw.isprintable() else repr(raw[:40])
    return ValidationFailed(
        f"The api-version '{shown}' is invalid: {reason}.",
        details=[FieldError(_FIELD, reason)],
        azure_code="InvalidApiVersionParameter",
        target="api-version",
    )
