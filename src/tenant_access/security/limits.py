"""In-memory limits: failed authentications per client address, and requests per key.

Both answer with a :class:`Decision` carrying whole seconds for ``Retry-After`` (the header takes
integers; rounding up means a client that waits exactly that long is let in). Both take the clock
as a parameter so tests can step time instead of sleeping. State lives in this process only: a
fleet of servers limits per server, which is enough to make online key guessing hopeless (a SAS
signature is 512 bits) while keeping the server free of external dependencies.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Clock = Callable[[], float]

DEFAULT_FAILURES_PER_MINUTE = 20
WINDOW_SECONDS = 60.0
MAX_TRACKED = 100_000  # bounds memory when an attacker varies its address


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to serve the request; if not, after how many seconds to try again."""

    allowed: bool
    retry_after: int = 0  # whole seconds, > 0 exactly when not allowed
    remaining: int = 0  # requests or failures left before the limit (for rate-limit headers)
    #: The slot a :meth:`FailureLimiter.reserve` took (its time), to hand back with ``release``.
    slot: float = 0.0


class FailureLimiter:
    """Refuses a client address after ``limit`` failed authentications within a sliding minute.

    Call :meth:`check` before authenticating (answer 429 when refused, without even verifying the
    credential, so a blocked client learns nothing) and :meth:`record_failure` after a failure.
    Successes deliberately do not reset the count: holding one valid credential must not buy
    unlimited guesses at another.

    ``check`` then ``record_failure`` is only sound when nothing awaits between them: otherwise a
    burst of concurrent attempts all pass the check before the first failure is recorded. A
    verification that awaits (a scrypt hash in a thread) uses :meth:`reserve` instead: the attempt
    takes its slot in the window before the await, as if it had failed already, and
    :meth:`release` hands the slot back when it succeeds. At most ``limit`` attempts per window
    can then fail, however many arrive at once.
    """

    def __init__(
        self,
        limit: int = DEFAULT_FAILURES_PER_MINUTE,
        *,
        window: float = WINDOW_SECONDS,
        clock: Clock = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        if limit < 1 or window <= 0 or max_tracked < 1:
            raise ValueError("limit, window and max_tracked must be positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_tracked = max_tracked
        # Per address, the times of its last `limit` failures; older ones can no longer matter.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._clean = Decision(True, remaining=limit)

    def check(self, address: str) -> Decision:
        if address not in self._failures:  # the usual case, answered without the lock
            return self._clean
        now = self._clock()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                return Decision(True, remaining=self.limit - len(times))
            return Decision(False, retry_after=_seconds(times[0] + self.window - now))

    def record_failure(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            self._take(address, now)

    def reserve(self, address: str) -> Decision:
        """Check and, if allowed, count an attempt as failed from now on, in one step; a success
        must :meth:`release` the decision's ``slot``. A refusal takes nothing."""
        now = self._clock()
        with self._lock:
            times = self._recent(address, now)
            used = len(times)
            if used >= self.limit:
                return Decision(False, retry_after=_seconds(times[0] + self.window - now))
            self._take(address, now)
            return Decision(True, remaining=self.limit - used - 1, slot=now)

    def release(self, address: str, decision: Decision) -> None:
        """Give back the slot of a :meth:`reserve` whose attempt succeeded (or was not an attempt
        at all: a malformed request). A slot that already left the window is simply gone."""
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return
            try:
                times.remove(decision.slot)
            except ValueError:
                return
            if not times:
                del self._failures[address]

    def _take(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        if not times:
            times = self._failures[address] = deque(maxlen=self.limit)
        times.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)

    def _recent(self, address: str, now: float) -> deque[float]:
        """The address's failures still inside the window (dropping the rest), or an empty deque."""
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times


class RateLimiter:
    """A token bucket per key (a principal and the scope it acts on, an access key): ``rate``
    requests a second on average, bursts of up to ``burst``. Off by default (``rate=None``): every request is allowed.

    A bucket is the right shape for API clients: an idle client may burst (the SDK's polling, a
    deployment script), a busy one is held to the average. It is also what ARM itself uses.
    """

    def __init__(
        self,
        rate: float | None = None,
        burst: int | None = None,
        *,
        clock: Clock = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive number of requests per second")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate or 1))
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # key -> (tokens, last time)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate is not None

    def acquire(self, key: Hashable, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it has them; otherwise say when it will."""
        if self.rate is None:
            return Decision(True, remaining=self.burst)
        if not 0 < cost <= self.burst:
            raise ValueError("cost must be positive and at most the burst size")
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
            if tokens >= cost:
                tokens -= cost
                allowed = True
            else:
                allowed = False
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_tracked:
                self._buckets.popitem(last=False)
        if allowed:
            return Decision(True, remaining=int(tokens))
        return Decision(False, retry_after=_seconds((cost - tokens) / self.rate))


def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay))
