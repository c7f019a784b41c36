"""The route table's machinery: matching a path to an operation, or saying precisely why not.

Literal segments match case-insensitively (Azure tooling is known to send ``resourcegroups``);
parameters match any single segment and are checked against their rules by the handler, so that a
bad name answers 400 with the rule it broke instead of an unhelpful 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenant_access.domain.errors import MethodNotAllowed, NotFound

if TYPE_CHECKING:
    from tenant_access.http.context import Context, Outcome

Handler = Callable[["Context"], Awaitable["Outcome"]]


@dataclass(frozen=True, slots=True)
class Route:
    operation: str
    method: str
    path: str
    handler: Handler
    summary: str
    #: ``None`` for operations without a body; otherwise the name of the request schema.
    body: str | None = None
    #: Operations that are not part of the versioned resource API (health, documents).
    versioned: bool = True
    #: Served without authentication (health checks, documents, the token endpoint).
    public: bool = False
    literals: tuple[tuple[int, str], ...] = field(default=(), compare=False)
    params: tuple[tuple[int, str], ...] = field(default=(), compare=False)
    length: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        # One leading slash is the root; a second one is an empty first segment, which a route may
        # name on purpose ("//metadata/endpoints": what clients ask when given an endpoint ending in "/").
        parts = (self.path[1:] if self.path.startswith("/") else self.path).rstrip("/").split("/")
        object.__setattr__(self, "length", len(parts))
        object.__setattr__(self, "literals", tuple(
            (i, p.lower()) for i, p in enumerate(parts) if not p.startswith("{")
        ))
        object.__setattr__(self, "params", tuple((i, p[1:-1]) for i, p in enumerate(parts) if p.startswith("{")))

    def match(self, segments: Sequence[str], lowered: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != self.length:
            return None
        for index, literal in self.literals:
            if lowered[index] != literal:
                return None
        return {name: segments[index] for index, name in self.params}


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._by_length: dict[int, list[Route]] = {}
        for route in self.routes:
            self._by_length.setdefault(route.length, []).append(route)

    def resolve(self, method: str, segments: Sequence[str]) -> tuple[Route, dict[str, str]]:
        lowered = [s.lower() for s in segments]
        allowed: list[str] = []
        for route in self._by_length.get(len(segments), ()):
            params = route.match(segments, lowered)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(
                f"The method {method} is not allowed here; use {', '.join(sorted(set(allowed)))}.",
                allow=sorted(set(allowed)),
            )
        raise NotFound("No operation is served at this path.", azure_code="NotFound")


def describe(routes: Sequence[Route]) -> list[dict[str, Any]]:
    return [{"operation": r.operation, "method": r.method, "path": r.path} for r in routes]
