from __future__ import annotations

import pytest

from tenant_access.security.limits import DEFAULT_FAILURES_PER_MINUTE, Decision, FailureLimiter, RateLimiter


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_default_is_twenty_failures_a_minute() -> None:
    assert DEFAULT_FAILURES_PER_MINUTE == 20
    clock = Clock()
    limiter = FailureLimiter(clock=clock)
    for index in range(20):
        assert limiter.check("10.0.0.1") == Decision(True, remaining=20 - index)
        limiter.record_failure("10.0.0.1")
        clock.advance(1)
    decision = limiter.check("10.0.0.1")
    assert not decision.allowed
    assert decision.retry_after == 40  # the first failure (t=1000) leaves the window at t=1060; now t=1020


def test_sliding_window_lets_in_one_more_as_each_failure_ages_out() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, clock=clock)
    for _ in range(3):
        limiter.record_failure("a")
        clock.advance(10)
    assert limiter.check("a").retry_after == 30
    clock.advance(29.5)
    assert limiter.check("a") == Decision(False, retry_after=1)  # rounded up, never 0
    clock.advance(0.5)
    assert limiter.check("a") == Decision(True, remaining=1)
    limiter.record_failure("a")
    assert not limiter.check("a").allowed
    clock.advance(60)
    assert limiter.check("a") == Decision(True, remaining=3)


def test_addresses_are_independent() -> None:
    clock = Clock()
    limiter = FailureLimiter(2, clock=clock)
    limiter.record_failure("a")
    limiter.record_failure("a")
    assert not limiter.check("a").allowed
    assert limiter.check("b").allowed
    assert limiter.check("2001:db8::1").allowed


def test_memory_is_bounded_by_max_tracked() -> None:
    clock = Clock()
    limiter = FailureLimiter(1, clock=clock, max_tracked=100)
    for index in range(1000):
        limiter.record_failure(f"10.0.{index // 256}.{index % 256}")
    assert len(limiter._failures) == 100
    assert not limiter.check("10.0.3.231").allowed  # the most recent are kept
    assert limiter.check("10.0.0.0").allowed


def test_invalid_failure_limiter_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        FailureLimiter(0)
    with pytest.raises(ValueError, match="positive"):
        FailureLimiter(5, window=0)


def test_rate_limiter_is_off_by_default() -> None:
    limiter = RateLimiter()
    assert not limiter.enabled
    assert all(limiter.acquire("k").allowed for _ in range(10_000))


def test_token_bucket_burst_then_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=5, clock=clock)
    assert limiter.enabled
    assert [limiter.acquire("k").remaining for _ in range(5)] == [4, 3, 2, 1, 0]
    refused = limiter.acquire("k")
    assert refused == Decision(False, retry_after=1)
    clock.advance(0.5)  # one token back at 2/s
    assert limiter.acquire("k").allowed
    assert not limiter.acquire("k").allowed
    clock.advance(100)  # refills to the burst, not beyond
    assert [limiter.acquire("k").allowed for _ in range(6)] == [True] * 5 + [False]


def test_token_bucket_retry_after_for_slow_rates() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=0.1, burst=1, clock=clock)
    assert limiter.acquire("k").allowed
    assert limiter.acquire("k").retry_after == 10
    clock.advance(4)
    assert limiter.acquire("k").retry_after == 6
    assert limiter.acquire("other").allowed


def test_token_bucket_cost_and_settings() -> None:
    limiter = RateLimiter(rate=1, burst=3, clock=Clock())
    assert limiter.acquire("k", cost=3).allowed
    with pytest.raises(ValueError, match="cost"):
        limiter.acquire("k", cost=4)
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0)
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=float("inf"))
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(rate=1, burst=0)
    assert RateLimiter(rate=7.5).burst == 8


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert limiter.acquire("k").allowed
    clock.advance(-100)
    assert not limiter.acquire("k").allowed


def test_a_reservation_counts_as_a_failure_until_released() -> None:
    """Concurrent attempts take their slots before they are verified: the limit holds however many
    are in flight, and successes give their slot back."""
    clock = Clock()
    limiter = FailureLimiter(3, clock=clock)
    taken = [limiter.reserve("a") for _ in range(3)]
    assert [d.allowed for d in taken] == [True, True, True]
    assert [d.remaining for d in taken] == [2, 1, 0]
    refused = limiter.reserve("a")
    assert not refused.allowed and refused.retry_after == 60
    assert not limiter.check("a").allowed
    limiter.release("a", taken[1])  # that one succeeded
    assert limiter.check("a") == Decision(True, remaining=1)
    assert limiter.reserve("b").allowed  # other addresses are untouched


def test_a_released_slot_is_the_one_that_was_taken() -> None:
    clock = Clock()
    limiter = FailureLimiter(2, clock=clock)
    early = limiter.reserve("a")
    clock.advance(30)
    late = limiter.reserve("a")
    limiter.release("a", late)
    clock.advance(30)  # the early failure leaves the window now, the late one would not have
    assert limiter.check("a") == Decision(True, remaining=2)
    assert early.slot == 1000.0


def test_releasing_everything_forgets_the_address_and_stale_releases_are_harmless() -> None:
    clock = Clock()
    limiter = FailureLimiter(2, clock=clock)
    decision = limiter.reserve("a")
    limiter.release("a", decision)
    limiter.release("a", decision)  # twice: nothing left to give back
    limiter.release("never-seen", decision)
    assert "a" not in limiter._failures
    kept = limiter.reserve("a")
    clock.advance(61)
    limiter.release("a", kept)  # the slot already left the window
    assert limiter.check("a") == Decision(True, remaining=2)


def test_rate_buckets_take_any_hashable_key() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, burst=1, clock=clock)
    assert limiter.acquire(("sas", "integration", "/subscriptions/s/a")).allowed
    assert not limiter.acquire(("sas", "integration", "/subscriptions/s/a")).allowed
    assert limiter.acquire(("sas", "integration", "/subscriptions/s/b")).allowed
