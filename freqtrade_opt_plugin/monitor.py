"""Telemetry of routed calls: what ran, how long it took, what failed."""

from __future__ import annotations

import statistics
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field


PATHS = ("optimized", "original")
WINDOW = 1000  # recent samples kept per (function, path) for medians


@dataclass
class PathStats:
    """Counters for one (function, path)."""

    calls: int = 0
    errors: int = 0
    fallbacks: int = 0
    total_seconds: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW))

    def median(self) -> float | None:
        return statistics.median(self.recent) if self.recent else None


class Monitor:
    """In-process aggregation of call records, one `PathStats` per function and path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, PathStats]] = defaultdict(
            lambda: {p: PathStats() for p in PATHS}
        )

    def record(
        self, name: str, path: str, seconds: float, *, error: bool = False, fallback: bool = False
    ) -> None:
        """Count one call of `name` on `path` ("optimized" or "original")."""
        with self._lock:
            stats = self._stats[name][path]
            stats.calls += 1
            stats.total_seconds += seconds
            stats.recent.append(seconds)
            stats.errors += error
            stats.fallbacks += fallback

    def stats(self, name: str) -> dict[str, PathStats]:
        with self._lock:
            return self._stats[name]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._stats)

    def reset(self) -> None:
        with self._lock:
            self._stats.clear()


_monitor = Monitor()


def get_monitor() -> Monitor:
    """The process-wide monitor."""
    return _monitor
