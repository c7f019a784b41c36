"""What a handler receives and what it returns; the wire formats render the latter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenant_access.domain.api_versions import ApiVersion
from tenant_access.domain.audit import Actor
from tenant_access.http.request import Request
from tenant_access.service import TenantAccess


@dataclass(slots=True)
class Context:
    request: Request
    params: dict[str, str]
    api_version: ApiVersion | None
    app: TenantAccess
    actor: Actor
    operation: str
    #: The active wire format's status for a success of a kind (see :meth:`status_of`).
    success_status: Callable[[str, Context], int] | None = None
    #: This server's public URL (``--public-url``, else its listening address): never the Host header.
    public_url: str = ""

    def status_of(self, kind: str) -> int:
        """The status the client will receive for a success of ``kind``, known before the use case
        runs so that its audit record (written in the same transaction) names what was answered."""
        return 200 if self.success_status is None else self.success_status(kind, self)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A use-case result tagged with what it is, so each wire format can pick status and shape.

    ``kind`` is one of: ``service``, ``service_list``, ``service_deleted``, ``access``,
    ``access_list``, ``access_etag``, ``secrets``, ``rotation``, ``audit_list``, ``document``.
    """

    kind: str
    value: Any
    created: bool = False
    #: Headers added to the answer in every wire format (e.g. ``Idempotent-Replayed``).
    headers: tuple[tuple[str, str], ...] = ()
