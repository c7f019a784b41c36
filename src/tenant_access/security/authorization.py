"""Who may do what, where: roles, scopes, and the one decision function :func:`authorize`.

A principal has one role and one scope. The role says which operations it may call; the scope says
on which resources: an ARM-style path prefix (``/``, a subscription, a resource group, or one API
Management service). Both are checked on every request and both must pass. Unknown operations are
refused for every role, owner included, so an operation added to the router without a line in
:data:`ROLE_OPERATIONS` fails closed instead of open.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType


class Role(enum.StrEnum):
    READER = "reader"
    KEY_OPERATOR = "key-operator"
    OWNER = "owner"


class PrincipalKind(enum.StrEnum):
    """How the caller proved who it is; audit records and rate limits may treat them differently."""

    BEARER = "bearer"
    SAS = "sas"
    NONE = "none"  # authentication is switched off


READ_OPERATIONS: frozenset[str] = frozenset({
    "services.list",
    "services.list_by_subscription",
    "subscriptions.list",
    "subscriptions.get",
    "tenants.list",
    "resource_groups.get",
    "services.get",
    "access.list",
    "access.get",
    "access.get_entity_tag",
    "access.key_usage",
    "access.rotation_policy.get",
})
KEY_OPERATIONS: frozenset[str] = frozenset({
    "access.list_secrets",
    "access.regenerate_primary_key",
    "access.regenerate_secondary_key",
    "access.git_regenerate_primary_key",
    "access.git_regenerate_secondary_key",
})
OWNER_OPERATIONS: frozenset[str] = frozenset({
    "services.create_or_update",
    "services.delete",
    "access.create",
    "access.update",
    "audit.list",
    "access.rotation_policy.put",
    "access.rotation_policy.delete",
    "events.subscriptions.list",
    "events.subscriptions.create_or_update",
    "events.subscriptions.get",
    "events.subscriptions.delete",
    "events.subscriptions.deliveries",
})
#: The emulator controls (``/_emulator/...``): owner-only, and since their path lies under no
#: subscription, only an owner whose scope is ``/`` can reach them.
EMULATOR_OPERATIONS: frozenset[str] = frozenset({
    "emulator.reset",
    "emulator.state",
    "emulator.seed",
    "emulator.faults.get",
    "emulator.faults.put",
    "emulator.faults.delete",
    "emulator.clock.get",
    "emulator.clock.set",
    "emulator.clock.advance",
    "emulator.clock.delete",
    "emulator.events",
    "emulator.sink.get",
    "emulator.sink.delete",
})

#: Which operation names (the router's ``Route.operation``) each role may call. Data rather than
#: code so tests and documentation are generated from the same table the server enforces.
ROLE_OPERATIONS: Mapping[Role, frozenset[str]] = MappingProxyType({
    Role.READER: READ_OPERATIONS,
    Role.KEY_OPERATOR: READ_OPERATIONS | KEY_OPERATIONS,
    Role.OWNER: READ_OPERATIONS | KEY_OPERATIONS | OWNER_OPERATIONS | EMULATOR_OPERATIONS,
})
ALL_OPERATIONS: frozenset[str] = ROLE_OPERATIONS[Role.OWNER]
#: Resource Manager's listings above a resource (Azure mode): a principal may call them when its
#: scope and the listed container are on one line (either contains the other), and sees only the
#: items its scope reaches (the handler filters with :func:`reaches`). The number is how many leading
#: path segments name the container: 0 for the whole server (``/subscriptions``, ``/tenants``), 2
#: for one subscription. So a principal of one subscription lists that subscription and is refused
#: any other.
FILTERED_OPERATIONS: Mapping[str, int] = MappingProxyType({
    "subscriptions.list": 0,
    "tenants.list": 0,
    "subscriptions.get": 2,
    "services.list_by_subscription": 2,
})

ROOT_SCOPE = "/"

# The literal segments of a scope, by position; the segments in between are names.
_SCOPE_LITERALS = ((0, "subscriptions"), (2, "resourcegroups"), (4, "providers"),
                   (5, "microsoft.apimanagement"), (6, "service"))
_SCOPE_LENGTHS = frozenset({0, 2, 4, 8})
_MAX_NAME = 256


@functools.lru_cache(maxsize=1024)
def scope_segments(scope: str) -> tuple[str, ...]:
    """The lower-cased segments of a valid scope; raises ``ValueError`` for anything else.

    Cached: every request checks its principal's scope, and a process sees few distinct scopes.

    Only the four documented shapes are accepted, so that a typo (``/subscription/x``) is refused
    when a token is issued instead of silently matching nothing, or worse, something else.
    """
    if not isinstance(scope, str) or not scope.startswith("/"):
        raise ValueError("a scope is a path starting with '/'")
    parts = _split(scope)
    if parts is None:
        raise ValueError("a scope has no empty segments")
    if len(parts) not in _SCOPE_LENGTHS:
        raise ValueError("a scope is '/', a subscription, a resource group or an API Management service")
    lowered = tuple(p.lower() for p in parts)
    for index, literal in _SCOPE_LITERALS:
        if index < len(lowered) and lowered[index] != literal:
            raise ValueError(f"segment {index + 1} of a scope must be {literal!r}")
    for index in (1, 3, 7):
        if index < len(parts) and not _is_name(parts[index]):
            raise ValueError(f"segment {index + 1} of a scope is not a valid name")
    return lowered


def normalize_scope(scope: str) -> str:
    """The canonical spelling of a scope: no trailing slash; case is kept (Azure keeps it in ids)."""
    scope_segments(scope)
    return "/" + "/".join(_split(scope) or ())


def covers(scope: str, resource_path: str | Sequence[str]) -> bool:
    """Whether ``resource_path`` is ``scope`` itself or lies under it.

    Compared segment by segment and case-insensitively (Azure names are), so ``/subscriptions/a``
    covers ``/subscriptions/A/resourceGroups/x`` but not ``/subscriptions/ab``. ``resource_path`` is
    either a path string or the router's already-decoded segments; pass the segments when you have
    them, since a percent-encoded ``/`` then stays inside its segment instead of splitting it. Paths
    with empty (``//``), ``.`` or ``..`` segments are never covered: something downstream might
    resolve them differently from this comparison. One leading and one trailing ``/`` are ignored.
    """
    try:
        wanted = scope_segments(scope)
    except ValueError:
        return False
    segments = _split(resource_path)
    if segments is None or any(p in (".", "..") for p in segments):
        return False
    if len(segments) < len(wanted):
        return False
    return all(have.lower() == want for have, want in zip(segments, wanted, strict=False))


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who (``sub``), what it may do (``role``), where (``scope``)."""

    sub: str
    role: Role
    scope: str
    kind: PrincipalKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "kind", PrincipalKind(self.kind))
        object.__setattr__(self, "scope", normalize_scope(self.scope))
        if not self.sub or len(self.sub) > _MAX_NAME:
            raise ValueError("a principal needs a subject of 1 to 256 characters")

    @classmethod
    def anonymous(cls) -> Principal:
        """The caller when authentication is off: may do everything, as the server did before auth."""
        return cls("anonymous", Role.OWNER, ROOT_SCOPE, PrincipalKind.NONE)

    @classmethod
    def for_sas(cls, uid: str, service_id: str, role: Role = Role.KEY_OPERATOR) -> Principal:
        """The caller behind a verified shared access signature of one service's access key.

        Scoped to that service. Key-operator by default: in Azure a SAS works only on the direct
        management API of its own service, never on ARM operations such as deleting the service.
        """
        return cls(uid, role, service_id, PrincipalKind.SAS)


def authorize(principal: Principal, operation: str, resource_path: str | Sequence[str]) -> bool:
    """Whether ``principal`` may call ``operation`` on ``resource_path``: role and scope must both allow.

    List operations addressed above the scope (listing a subscription's services with a resource
    group scope) are refused here; a caller that wants to serve them filtered should check each item
    with :func:`covers` instead.
    """
    allowed = ROLE_OPERATIONS.get(principal.role, frozenset())
    if operation not in allowed:
        return False
    container = FILTERED_OPERATIONS.get(operation)
    if container is not None:
        segments = _split(resource_path)
        return segments is not None and len(segments) >= container and reaches(principal.scope,
                                                                                segments[:container])
    return covers(principal.scope, resource_path)


def reaches(scope: str, resource_path: str | Sequence[str]) -> bool:
    """Whether ``scope`` and ``resource_path`` are on one line: the path lies under the scope (as
    :func:`covers`) or the scope lies under the path, as a subscription holds a resource group
    scope. What a listing above a principal's scope may show it."""
    if covers(scope, resource_path):
        return True
    segments = _split(resource_path)
    if segments is None or any(p in (".", "..") for p in segments):
        return False
    try:
        wanted = scope_segments(scope)
    except ValueError:
        return False
    return len(segments) <= len(wanted) and all(s.lower() == w for s, w in zip(segments, wanted, strict=False))


def _split(path: str | Sequence[str]) -> list[str] | None:
    """Segments without the leading and trailing empties; ``None`` when an empty one is inside."""
    parts = path.split("/") if isinstance(path, str) else list(path)
    if parts and parts[0] == "":
        parts.pop(0)
    if parts and parts[-1] == "":
        parts.pop()
    return None if "" in parts else parts


def _is_name(segment: str) -> bool:
    return len(segment) <= _MAX_NAME and segment not in (".", "..") and segment.isprintable()
