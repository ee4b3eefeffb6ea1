"""Klaviyo's per-endpoint rate limits, as fixed one-second and one-minute windows."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

PER_UNIT = {"s": 1, "m": 60}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"150/m"`` -> (150 requests, 60 seconds)."""
    count, unit = rate.split("/")
    return int(count), PER_UNIT[unit]


class RateLimiter:
    """Counts requests per (operation, window) and says how long to wait when one is full.

    ``scale`` multiplies every limit (0.1 makes them ten times tighter, for tests);
    a limit never drops below one request per window.
    """

    def __init__(self, scale: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.scale = scale
        self._clock = clock
        self._counts: dict[tuple[str, int, int], int] = {}
        self._lock = threading.Lock()

    def acquire(self, operation: str, rates: tuple[str, ...]) -> int | None:
        """Count one request; return None if allowed, else the seconds until a retry can pass."""
        now = self._clock()
        windows = []
        for rate in rates:
            count, seconds = parse_rate(rate)
            limit = max(1, int(count * self.scale))
            windows.append(((operation, seconds, int(now // seconds)), limit, seconds))
        with self._lock:
            for key, limit, seconds in windows:
                if self._counts.get(key, 0) >= limit:
                    window_end = (key[2] + 1) * seconds
                    return max(1, math.ceil(window_end - now))
            for key, _, _ in windows:
                self._counts[key] = self._counts.get(key, 0) + 1
            self._forget_old_windows(now)
        return None

    def _forget_old_windows(self, now: float) -> None:
        if len(self._counts) > 1000:
            self._counts = {key: count for key, count in self._counts.items() if key[2] >= int(now // key[1])}
