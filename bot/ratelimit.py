"""Rate limits for the servers' doors: at most ``per_minute`` requests a key (a conversation,
a client address) in any minute, as a token bucket refilled continuously.

    limiter = RateLimiter(per_minute=30)
    if not limiter.allow(conversation_id):
        ...  # answer 429 with limiter.retry_after(conversation_id)

Memory is bounded: the ``max_keys`` least recently seen keys are kept (a flood of new keys
evicts old ones, whose buckets were full anyway or soon would be). Thread-safe.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """A token bucket per key: ``per_minute`` tokens, one taken per request."""

    def __init__(self, per_minute: float, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute, self.max_keys, self._clock = float(per_minute), max_keys, clock
        self._rate = self.per_minute / 60.0  # tokens a second
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, time)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take a token for ``key``; whether the request may go on."""
        with self._lock:
            tokens = self._refilled(key)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, self._clock())
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` has a token again (0: it has one now)."""
        with self._lock:
            missing = 1.0 - self._refilled(key)
        return 0 if missing <= 0 else math.ceil(missing / self._rate)

    def _refilled(self, key: str) -> float:
        tokens, seen = self._buckets.get(key, (self.per_minute, self._clock()))
        return min(self.per_minute, tokens + (self._clock() - seen) * self._rate)
