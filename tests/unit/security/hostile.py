"""Hostile inputs shared by the parsers' tests: whatever a client sends, the answer is one clean error."""

from __future__ import annotations

import random


def garbage_inputs(seed: int = 1234, count: int = 200) -> list[str]:
    """Deterministic hostile strings: random ASCII and non-ASCII, near-miss structures, 10 KB blobs."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019+/=_-.&%$ \t\n\r\x00é€😀\udc80\u202e"
    samples = [
        "", " ", ".", "..", "...", "a.b", "a.b.c", "a.b.c.d", "=", "&&", "uid=&ex=&sn=",
        "é.é.é", "\x00" * 10, "😀" * 100, "\udc80", "A" * 10_240, "é" * 10_240,
        ("eyJ" + "A" * 5000 + ".") * 2, "." * 10_240, "&" * 10_240, "=" * 10_240,
        "eyJhbGciOiJub25lIn0." * 500,
    ]
    for _ in range(count):
        length = rng.choice([1, 5, 40, 200, 1000, 10_240])
        samples.append("".join(rng.choice(alphabet) for _ in range(length)))
    return samples
