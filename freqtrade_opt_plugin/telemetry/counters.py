"""The hot path: per-thread counters and samples of routed calls, and memory sampling.

`Counters.record` is called once per routed call. It only updates the calling thread's own table
(no lock; a couple of microseconds); tables are merged when read or flushed.

Thread CPU time (``time.thread_time``, a system call: ~0.3-2 µs) is measured by the Router
when `cpu_start(name)` returns a start value: on every call of an optimization whose calls take
0.5 ms or more on average, on every k-th call of shorter ones (k = 0.5 ms / mean call, at most
1000), so measuring it costs at most ~1% of the routed time. The sampled calls are a uniform
sample: their mean and median estimate every call's.

Memory is measured, not estimated, on a sample of calls. `should_sample_memory(name)` says yes
at most once every k calls of an optimization in a process (k = round(1 / memory_sample_rate)),
never while somebody else's ``tracemalloc`` is tracing, and only within a time budget: the time
spent in traced calls of that optimization, plus the estimated cost of this one, must stay within
``memory_budget`` of the time its calls took in this process. The estimate is the last traced
call's slowdown over the mean clean call (20x before the first). Traced calls are counted in
``calls`` and ``total_seconds`` but left out of the timing statistics, as are calls that raised.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from freqtrade_opt_plugin.telemetry.settings import WINDOW, MonitorSettings
from freqtrade_opt_plugin.telemetry.store import PathDelta, Totals


logger = logging.getLogger(__name__)

PATHS = ("optimized", "original")
FIRST_TRACE_FACTOR = 20.0  # assumed slowdown of a traced call before one was measured
CPU_FULL_SECONDS = 5e-4  # calls this long (mean) get their CPU time measured every time
CPU_MAX_EVERY = 1000  # shorter calls: at least every 1000th call
_thread_time = time.thread_time

_STAT_FIELDS = (
    "calls", "errors", "fallbacks", "total_seconds", "timed_calls", "timed_seconds",
    "mem_samples", "mem_peak_sum", "seq", "mem_seq", "cpu_calls", "cpu_seconds", "cpu_seq",
)
_ZERO_MARK = (0, 0, 0, 0.0, 0, 0.0, 0, 0, 0, 0, 0, 0.0, 0)


class PathStats:
    """Counters of one (function, path) in this process.

    `calls`, `errors`, `fallbacks`, `total_seconds` count every call. Timing statistics use the
    clean calls only (`timed_calls`, `timed_seconds`, `recent`): no errors, no traced calls;
    `cpu_*` / `cpu_recent` are their thread CPU times when the caller measured them.
    `mem_*` describe the memory-sampled calls (peak traced allocation in bytes).
    """

    __slots__ = (*_STAT_FIELDS, "mem_peak_max", "recent", "mem_recent", "cpu_recent", "flushed")

    def __init__(self, window: int = WINDOW) -> None:
        self.calls = self.errors = self.fallbacks = self.timed_calls = self.cpu_calls = 0
        self.mem_samples = self.mem_peak_sum = self.mem_peak_max = 0
        self.seq = self.mem_seq = self.cpu_seq = 0  # samples ever appended
        self.total_seconds = self.timed_seconds = self.cpu_seconds = 0.0
        self.recent: deque[float] = deque(maxlen=window)
        self.mem_recent: deque[int] = deque(maxlen=window)
        self.cpu_recent: deque[float] = deque(maxlen=window)
        self.flushed: tuple = _ZERO_MARK  # the counters already written to the store

    def median(self) -> float | None:
        return float(np.median(copy_of(self.recent))) if self.recent else None

    def mean(self) -> float | None:
        return self.timed_seconds / self.timed_calls if self.timed_calls else None

    def p95(self) -> float | None:
        return quantile(copy_of(self.recent), 0.95)

    def totals(self, name: str, path: str) -> Totals:
        return Totals(name, path, self.calls, self.errors, self.fallbacks, self.total_seconds,
                      self.timed_calls, self.timed_seconds, self.mem_samples, self.mem_peak_sum,
                      self.mem_peak_max, self.cpu_calls, self.cpu_seconds)

    def __repr__(self) -> str:
        return (f"PathStats(calls={self.calls}, errors={self.errors}, "
                f"fallbacks={self.fallbacks}, median={self.median()})")

    @classmethod
    def merged(cls, parts: Sequence[PathStats], window: int = WINDOW) -> PathStats:
        """One thread's stats as they are, or a merged copy of several threads' stats."""
        if len(parts) == 1:
            return parts[0]
        out = cls(window * max(1, len(parts)))
        for part in parts:
            for name in _STAT_FIELDS:
                setattr(out, name, getattr(out, name) + getattr(part, name))
            out.mem_peak_max = max(out.mem_peak_max, part.mem_peak_max)
            out.recent.extend(copy_of(part.recent))
            out.mem_recent.extend(copy_of(part.mem_recent))
            out.cpu_recent.extend(copy_of(part.cpu_recent))
        return out


def spread(values: list, limit: int) -> list:
    """At most `limit` of `values`, evenly spaced (all of them when there are few)."""
    n = len(values)
    if n <= limit:
        return values
    return [values[i * n // limit] for i in range(limit)]


def copy_of(items: deque) -> list:
    """A list copy of a deque another thread may be appending to."""
    for _ in range(10):
        try:
            return list(items)
        except RuntimeError:  # mutated during iteration
            continue
    return []


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default), None for no values."""
    if len(values) == 0:
        return None
    return float(np.quantile(np.asarray(values, dtype=float), q))


class Counters:
    """Aggregation of call records: one `PathStats` per function and path and thread."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # guards the list of tables, not the counters
        self._tls = threading.local()
        self._tables: list[dict[tuple[str, str], PathStats]] = []  # one per recording thread
        self._unflushed = 0  # approximate under threads: only decides when to flush
        self._apply_settings(settings)
        self._mem_counts: dict[str, int] = {}
        self._mem_spent: dict[str, float] = {}  # seconds spent in traced calls, per name
        self._mem_factor: dict[str, float] = {}  # last traced call / mean call, per name
        self._cpu_count: dict[tuple[str, str], int] = {}
        self._cpu_every: dict[tuple[str, str], int] = {}
        self._record_failed = False
        self._drains: list[Callable[[bool], None]] = []  # hot Routers' untimed calls

    def _apply_settings(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._window = settings.window  # of paths seen from now on
        rate = settings.memory_sample_rate
        self._mem_every = max(1, round(1 / rate)) if rate > 0 else 0

    # -- the hot path ----------------------------------------------------------------------------

    def record(
        self,
        name: str,
        path: str,
        seconds: float,
        *,
        cpu_seconds: float | None = None,
        error: bool = False,
        fallback: bool = False,
        peak_bytes: int | None = None,
        calls: int = 1,
        timed: bool = True,
    ) -> None:
        """Count one call of `name` on `path` ("optimized" or "original"). Never raises.

        `seconds`: wall time; `cpu_seconds`: the calling thread's CPU time during the call
        (``time.thread_time`` difference), what the regression analysis judges on;
        `peak_bytes`: the peak traced allocation of a memory-sampled call.
        `calls` > 1 (sampled recording, see `hot_router`): this record stands for `calls` calls
        of which one was measured (`seconds`, `cpu_seconds`): `calls` counts them all,
        `total_seconds` grows by ``seconds * calls`` (an extrapolation), the timing and CPU
        statistics get the one sample. `timed=False`: none of the `calls` was measured
        (`seconds` is an estimate per call): counted in `calls` and `total_seconds` only.
        """
        try:
            try:
                table = self._tls.table
            except AttributeError:
                table = self._new_table()
            stats = table.get((name, path))
            if stats is None:
                stats = self._new_stats(table, name, path)
            stats.calls += calls
            stats.total_seconds += seconds * calls if calls != 1 else seconds
            if error:
                stats.errors += 1
            if fallback:
                stats.fallbacks += 1
            if not timed:
                pass
            elif peak_bytes is not None:
                stats.mem_samples += 1
                stats.mem_peak_sum += peak_bytes
                if peak_bytes > stats.mem_peak_max:
                    stats.mem_peak_max = peak_bytes
                stats.mem_recent.append(peak_bytes)
                stats.mem_seq += 1
                self._traced(name, stats, seconds)
            elif not error:
                stats.timed_calls += 1
                stats.timed_seconds += seconds
                stats.recent.append(seconds)
                stats.seq += 1
                if cpu_seconds is not None:
                    stats.cpu_calls += 1
                    stats.cpu_seconds += cpu_seconds
                    stats.cpu_recent.append(cpu_seconds)
                    stats.cpu_seq += 1
            self._unflushed += 1
            self._after_record()
        except Exception:
            if not self._record_failed:
                self._record_failed = True
                logger.warning("freqtrade-opt: could not record a call of %r on path %r",
                               name, path, exc_info=True)

    def _after_record(self) -> None:
        """Called after each record (the monitor flushes from here)."""

    def cpu_start(self, name: str, path: str) -> float | None:
        """`time.thread_time()` when this call of `name` on `path` gets its CPU time measured,
        else None (policy: module doc; counted per path, so alternating paths are both sampled).
        The Router passes ``thread_time() - start`` to `record`."""
        key = (name, path)
        count = self._cpu_count.get(key, 0) + 1
        self._cpu_count[key] = count
        if count & 255 == 0:
            self._cpu_every[key] = self._cpu_interval(name, path)
        if count % self._cpu_every.get(key, 1):
            return None
        return _thread_time()

    def _cpu_interval(self, name: str, path: str) -> int:
        calls = seconds = 0.0
        for n, p, stats in self._items():
            if n == name and p == path:
                calls += stats.timed_calls
                seconds += stats.timed_seconds
        if not calls or not seconds:
            return 1
        return max(1, min(CPU_MAX_EVERY, math.ceil(CPU_FULL_SECONDS / (seconds / calls))))

    def should_sample_memory(self, name: str) -> bool:
        """Whether to trace the memory of this call of `name` (policy: see the module doc)."""
        every = self._mem_every
        if not every:
            return False
        count = self._mem_counts.get(name, 0) + 1
        self._mem_counts[name] = count
        if count % every or tracemalloc.is_tracing():
            return False
        return self._within_memory_budget(name)

    def _within_memory_budget(self, name: str) -> bool:
        total = 0.0
        typical = 0.0  # the slower path's mean clean call: O(1), unlike a median
        for _, _, stats in (item for item in self._items() if item[0] == name):
            total += stats.total_seconds
            if stats.timed_calls:
                typical = max(typical, stats.timed_seconds / stats.timed_calls)
        if not typical:
            return False
        estimate = self._mem_factor.get(name, FIRST_TRACE_FACTOR) * typical
        spent = self._mem_spent.get(name, 0.0)
        return spent + estimate <= self.settings.memory_budget * total

    def _traced(self, name: str, stats: PathStats, seconds: float) -> None:
        """Book-keeping of a traced call (rare): its time against the budget, its slowdown."""
        self._mem_spent[name] = self._mem_spent.get(name, 0.0) + seconds
        if stats.timed_calls:
            typical = stats.timed_seconds / stats.timed_calls
            self._mem_factor[name] = max(1.0, seconds / typical)

    def _new_table(self) -> dict[tuple[str, str], PathStats]:
        table: dict[tuple[str, str], PathStats] = {}
        with self._lock:
            self._tables.append(table)
        self._tls.table = table
        return table

    def _new_stats(self, table: dict, name: str, path: str) -> PathStats:
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        stats = table[(name, path)] = PathStats(self._window)
        return stats

    def add_drain(self, drain: Callable[[bool], None]) -> None:
        """Register a sampled recorder's `drain(discard)` (`hot_router`): it records the calls it
        counted but has not recorded yet (with ``discard=True``, in a forked child, it forgets
        them). Called before the counters are read (views, flush, reset), so counts stay
        exact."""
        self._drains.append(drain)

    def _drain(self, discard: bool = False) -> None:
        for drain in list(self._drains):
            try:
                drain(discard)
            except Exception:
                logger.debug("freqtrade-opt: a telemetry drain failed", exc_info=True)

    def _items(self) -> list[tuple[str, str, PathStats]]:
        """(name, path, stats) of every thread's table."""
        with self._lock:
            tables = list(self._tables)
        out = []
        for table in tables:
            for _ in range(10):
                try:
                    out.extend((n, p, s) for (n, p), s in list(table.items()))
                    break
                except RuntimeError:  # another thread added an entry meanwhile
                    continue
        return out

    def _forget_tables(self) -> None:
        """In a forked child: start empty (the parent flushes its own records)."""
        self._drain(discard=True)
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._tables = []
        self._unflushed = 0
        self._mem_counts = {}
        self._mem_spent = {}
        self._mem_factor = {}
        self._cpu_count = {}
        self._cpu_every = {}

    # -- in-process views ------------------------------------------------------------------------

    def stats(self, name: str) -> dict[str, PathStats]:
        """This process's stats of `name` per path ("optimized", "original"). Read only."""
        self._drain()
        parts: dict[str, list[PathStats]] = {p: [] for p in PATHS}
        for n, p, s in self._items():
            if n == name:
                parts[p].append(s)
        return {
            p: PathStats.merged(found, self._window) if found else PathStats(self._window)
            for p, found in parts.items()
        }

    def names(self) -> list[str]:
        self._drain()
        return sorted({n for n, _, _ in self._items()})

    def reset(self, name: str | None = None) -> None:
        """Forget this process's stats of `name` (or all), without touching the store."""
        self._drain()  # pending sampled calls belong to the stats forgotten (or kept)
        with self._lock:
            tables = list(self._tables)
        for table in tables:
            for key in [k for k in list(table) if name is None or k[0] == name]:
                table.pop(key, None)
        for key in [name] if name is not None else list(self._mem_counts):
            self._mem_counts.pop(key, None)
            self._mem_spent.pop(key, None)
            self._mem_factor.pop(key, None)
        self._unflushed = 0

    def counters(self) -> dict[str, dict[str, Any]]:
        """A plain-dict copy of this process's counters per function (for strategies, logs)."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.names():
            per = self.stats(name)
            opt, orig = per["optimized"], per["original"]
            total = opt.calls + orig.calls
            out[name] = {
                "optimized_calls": opt.calls,
                "original_calls": orig.calls,
                "errors": opt.errors + orig.errors,
                "fallbacks": opt.fallbacks + orig.fallbacks,
                "adoption_rate": opt.calls / total if total else None,
                "optimized_median_seconds": opt.median(),
                "original_median_seconds": orig.median(),
                "optimized_total_seconds": opt.total_seconds,
                "original_total_seconds": orig.total_seconds,
                "memory_samples": opt.mem_samples + orig.mem_samples,
                "disabled": self.is_disabled(name),
            }
        return out

    def is_disabled(self, name: str) -> str | None:
        return None

    def local_view(self) -> dict[str, dict[str, tuple[Totals, list[float], list[int]]]]:
        """This process's data per name and path: (totals, clean timings, memory peaks)."""
        return {
            name: {
                path: (st.totals(name, path), copy_of(st.recent), copy_of(st.mem_recent))
                for path, st in self.stats(name).items()
            }
            for name in self.names()
        }

    def local_cpu(self, name: str) -> dict[str, list[float]]:
        """This process's thread CPU samples of `name` per path (oldest first)."""
        return {path: copy_of(st.cpu_recent) for path, st in self.stats(name).items()}

    def collect(self, per_flush: int, per_run: int) -> tuple[list[PathDelta], list[tuple]]:
        """Deltas since the last flush and the marks to set once they are persisted."""
        self._drain()
        merged: dict[tuple[str, str], PathDelta] = {}
        marks: list[tuple[PathStats, tuple]] = []
        for name, path, s in self._items():
            old = s.flushed
            now = tuple(getattr(s, f) for f in _STAT_FIELDS)
            if now[0] == old[0] and now[6] == old[6]:
                continue
            d = merged.get((name, path))
            if d is None:
                d = merged[(name, path)] = PathDelta(name, path)
            d.calls += now[0] - old[0]
            d.errors += now[1] - old[1]
            d.fallbacks += now[2] - old[2]
            d.total_seconds += now[3] - old[3]
            d.timed_calls += now[4] - old[4]
            d.timed_seconds += now[5] - old[5]
            d.mem_samples += now[6] - old[6]
            d.mem_peak_sum += now[7] - old[7]
            d.mem_peak_max = max(d.mem_peak_max, s.mem_peak_max)
            d.cpu_calls += now[10] - old[10]
            d.cpu_seconds += now[11] - old[11]
            for source, seq, target, limit in (
                (s.recent, 8, d.timings, per_flush),
                (s.mem_recent, 9, d.peaks, per_flush),
                (s.cpu_recent, 12, d.cpu, per_run),
            ):
                new = now[seq] - old[seq]
                if new:
                    values = copy_of(source)
                    target.extend(spread(values[-min(new, len(values)):], limit))
            marks.append((s, now))
        return list(merged.values()), marks
