"""Service principals: the identities that sign in with a client id and secret, as Azure's do."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    client_id: str
    role: str
    scope: str
    description: str
    created_at: _dt.datetime
    #: scrypt hash of the client secret; never the secret itself. Kept out of ``repr``.
    secret_hash: str = field(repr=False)
    disabled_at: _dt.datetime | None = None
    #: Moves each time the secret is replaced; tokens carry the generation they were issued under
    #: (``sgen``), so a rotation refuses every token issued before it.
    generation: int = 0
