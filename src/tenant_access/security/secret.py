"""A wrapper that keeps secrets out of logs, tracebacks and debug output.

Key material passes through code that logs, formats error messages and shows locals in tracebacks;
wrapping it makes "print the object" safe by default, so leaking it takes a deliberate
:meth:`Secret.reveal`. Modelled on Starlette's ``Secret``, but ``str()`` is masked too: ``print`` and
f-strings are where accidental leaks happen.
"""

from __future__ import annotations

import hmac
from typing import Any, Generic, NoReturn, TypeVar

T = TypeVar("T", str, bytes)

MASK = "**********"


class Secret(Generic[T]):
    """A secret value whose ``repr``, ``str`` and ``format`` all print ``**********``."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        if not isinstance(value, str | bytes):
            raise TypeError("Secret holds str or bytes")
        self._value: T = value

    def reveal(self) -> T:
        """The secret itself. Named loudly so that every use is easy to find in review."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        # Constant time, on bytes: compare_digest raises TypeError on non-ASCII str.
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(_as_bytes(self._value), _as_bytes(other._value))

    def __hash__(self) -> int:
        # Equal secrets are interchangeable, but a hash of the value would be an oracle; keep
        # Secret out of sets and dict keys altogether.
        raise TypeError("Secret is not hashable")

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value to wherever the pickle goes (caches, queues, crash dumps).
        raise TypeError("Secret cannot be pickled")

    def __copy__(self) -> Secret[T]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret[T]:
        return self


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def plain(value: T | Secret[T]) -> T:
    """The value itself, whether or not it came wrapped: lets APIs accept both without overloads."""
    return value.reveal() if isinstance(value, Secret) else value
