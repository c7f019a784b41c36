"""Remembered results of pure computations, for the request path.

Every entry can be computed again, so when the memory is full it is emptied whole: cheaper on
every hit than keeping an order for eviction, and a full memory means the keys are not repeating
anyway.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def remember(self, key: K, value: V) -> V:
        if len(self) >= self.max_entries:
            self.clear()
        self[key] = value
        return value
