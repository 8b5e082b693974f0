"""Fixed-window request counters per client (an API key, or an address sending wrong keys).

In memory, per API process: with several processes each allows the limit (set it accordingly).
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """At most `limit` hits per `window_s` seconds for each name."""

    def __init__(self, limit: int, window_s: float = 60.0, max_names: int = 100_000) -> None:
        self.limit, self.window_s, self.max_names = limit, window_s, max_names
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, name: str, now: float | None = None) -> int:
        """Count a hit; 0 when allowed, else the whole seconds until the window ends."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._windows.get(name, (now, 0))
            if now - start >= self.window_s:
                start, count = now, 0
            if count >= self.limit:
                return max(1, math.ceil(start + self.window_s - now))
            if len(self._windows) >= self.max_names and name not in self._windows:
                self._expire(now)
            self._windows[name] = (start, count + 1)
            return 0

    def blocked(self, name: str, now: float | None = None) -> int:
        """0 when `name` may hit again, else the whole seconds until its window ends (counts
        nothing)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._windows.get(name, (now, 0))
            if now - start >= self.window_s or count < self.limit:
                return 0
            return max(1, math.ceil(start + self.window_s - now))

    def _expire(self, now: float) -> None:
        old = [n for n, (start, _) in self._windows.items() if now - start >= self.window_s]
        for name in old or list(self._windows)[: len(self._windows) // 2]:
            del self._windows[name]
