"""The memo behind the request path's remembered routes, decisions, answers and opened keys."""

from __future__ import annotations

from tenant_access.memo import Memo


def test_remember_answers_the_value_and_keeps_it() -> None:
    memo: Memo[str, int] = Memo(3)
    assert memo.remember("a", 1) == 1
    assert memo.get("a") == 1


def test_a_full_memo_is_emptied_before_the_next_entry() -> None:
    memo: Memo[int, int] = Memo(3)
    for n in range(3):
        memo.remember(n, n)
    memo.remember(3, 3)
    assert dict(memo) == {3: 3}
    assert len(memo) <= memo.max_entries
