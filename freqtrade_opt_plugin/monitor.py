"""Telemetry of routed calls: what ran, how long it took, what failed, what it gained.

The Router calls `Monitor.record` once per routed call. That only updates in-process counters (a
couple of microseconds); the records reach the persistent store (`telemetry_store`, SQLite under
``state_dir()``) in batches: every ``flush_every`` records, at the first record after
``flush_interval`` seconds, and when the process exits (``atexit``; for ``multiprocessing`` fork
children a ``multiprocessing.util.Finalize``). So hyperopt workers, which are separate
interpreters, add their calls to the same store, and baselines accumulate across runs.
Counters are written as additive upserts in one transaction per flush: concurrent writers never
lose or double-count a call. Records made since the last flush are lost only if a process is killed
(SIGKILL / SIGTERM without a clean exit).

Memory is measured, not estimated, on a sample of calls. `should_sample_memory(name)` says yes
at most once every k calls of an optimization in a process (k = round(1 / memory_sample_rate),
default 50), never while somebody else's ``tracemalloc`` is tracing, and only within a time budget:
the time spent in traced calls of that optimization, plus the estimated cost of this one, must stay
within ``memory_budget`` (default 1%) of the time its calls took in this process. The estimate is
the last traced call's slowdown over the mean clean call (20x before the first: tracing Python
allocations can slow a call 15x). So tracing costs at most ~1% of routed time, and memory figures
appear once an optimization has run long enough (hyperopt; long backtests), not after 3 calls.
The Router then traces that call (``start_memory_trace`` / ``stop_memory_trace``) and passes the
peak traced allocation as ``record(..., peak_bytes=...)``. Traced calls are slower, so their
durations are counted in ``calls`` and ``total_seconds`` but left out of the timing statistics
(mean, median, p95), as are calls that raised (their time is that of a failed attempt).

Analysis (regressions, the performance gate) uses medians and a one-sided Mann-Whitney rank test
with a minimum sample count: one slow call moves neither, so it raises no alarm. The persistent
auto-disabled state (error threshold, performance gate) lives in the store too. Reports are built
and rendered in `freqtrade_opt_plugin.report`; the store's format is in `telemetry_store`.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import secrets
import statistics
import sys
import threading
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from freqtrade_opt_plugin import paths
from freqtrade_opt_plugin.settings import SafeSettings
from freqtrade_opt_plugin.telemetry_store import FILENAME, PathDelta, TelemetryStore, Totals


if TYPE_CHECKING:
    from freqtrade_opt_plugin.registry import Optimization


logger = logging.getLogger(__name__)
_monotonic = time.monotonic

PATHS = ("optimized", "original")
ENV_PREFIX = "FREQTRADE_OPT_MONITOR_"
RUN_ENV = "_FREQTRADE_OPT_RUN_ID"  # one run = a top-level process and the workers it starts
WINDOW = 1000  # default in-process samples kept per (function, path)
FIRST_TRACE_FACTOR = 20.0  # assumed slowdown of a traced call before one was measured


# -- settings -------------------------------------------------------------------------------------


class MonitorSettings(SafeSettings):
    """Monitor settings, from ``FREQTRADE_OPT_MONITOR_<FIELD>`` environment variables.

    An invalid value is logged (variable, value, what is accepted) and the default is used.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    config_path = "freqtrade_opt.monitor"

    persist: bool = True  # write telemetry to the store under state_dir()
    memory_sample_rate: float = Field(default=0.02, ge=0.0, le=1.0)  # most calls traced
    memory_budget: float = Field(default=0.01, ge=0.0, le=1.0)  # traced time / routed time
    flush_every: int = Field(default=10_000, ge=1)  # records between flushes (at most)
    flush_interval: float = Field(default=10.0, gt=0.0)  # seconds between flushes
    samples_per_flush: int = Field(default=500, ge=1)  # stored per path and flush (spread out)
    window: int = Field(default=WINDOW, ge=10, le=100_000)  # in-process samples per path
    max_samples: int = Field(default=2000, ge=10, le=1_000_000)  # stored samples per path
    max_runs: int = Field(default=50, ge=1)  # runs with their own totals; older are folded
    max_store_mb: int = Field(default=32, ge=1)  # hard size cap of the store file
    busy_timeout: float = Field(default=10.0, gt=0.0)  # seconds to wait for other writers
    recent: int = Field(default=200, ge=5)  # newest samples compared by the analyses
    min_samples: int = Field(default=20, ge=3)  # per side, before a regression is reported
    report_min_samples: int = Field(default=5, ge=1)  # per side, before a speedup is shown
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)  # one-sided rank test significance


def load_settings() -> MonitorSettings:
    return MonitorSettings()


# -- in-process statistics ------------------------------------------------------------------------


_STAT_FIELDS = (
    "calls", "errors", "fallbacks", "total_seconds", "timed_calls", "timed_seconds",
    "mem_samples", "mem_peak_sum", "seq", "mem_seq",
)
_ZERO_MARK = (0, 0, 0, 0.0, 0, 0.0, 0, 0, 0, 0)


class PathStats:
    """Counters of one (function, path) in this process.

    `calls`, `errors`, `fallbacks`, `total_seconds` count every call. Timing statistics use the
    clean calls only (`timed_calls`, `timed_seconds`, `recent`): no errors, no traced calls.
    `mem_*` describe the memory-sampled calls (peak traced allocation in bytes).
    """

    __slots__ = (*_STAT_FIELDS, "mem_peak_max", "recent", "mem_recent", "flushed")

    def __init__(self, window: int = WINDOW) -> None:
        self.calls = self.errors = self.fallbacks = self.timed_calls = 0
        self.mem_samples = self.mem_peak_sum = self.mem_peak_max = 0
        self.seq = self.mem_seq = 0  # samples ever appended (to find those not yet flushed)
        self.total_seconds = self.timed_seconds = 0.0
        self.recent: deque[float] = deque(maxlen=window)
        self.mem_recent: deque[int] = deque(maxlen=window)
        self.flushed: tuple = _ZERO_MARK  # the counters already written to the store

    def median(self) -> float | None:
        return statistics.median(self.recent) if self.recent else None

    def mean(self) -> float | None:
        return self.timed_seconds / self.timed_calls if self.timed_calls else None

    def p95(self) -> float | None:
        return quantile(self.recent, 0.95)

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
            out.recent.extend(_copy(part.recent))
            out.mem_recent.extend(_copy(part.mem_recent))
        return out


def _spread(values: list, limit: int) -> list:
    """At most `limit` of `values`, evenly spaced (all of them when there are few)."""
    n = len(values)
    if n <= limit:
        return values
    return [values[i * n // limit] for i in range(limit)]


def _copy(items: deque) -> list:
    """A list copy of a deque another thread may be appending to."""
    for _ in range(10):
        try:
            return list(items)
        except RuntimeError:  # mutated during iteration
            continue
    return []


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (like numpy's default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rank_test_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value for "values of `x` tend to be larger than those of `y`".

    Normal approximation with tie correction and continuity correction (fine from ~5 per side:
    5 against 5 with every x larger gives p = 0.006).
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        return 1.0
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n1 + n2
    rank_sum_x = 0.0
    tie_term = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        midrank = (i + j) / 2 + 1
        ties = j - i + 1
        tie_term += ties**3 - ties
        rank_sum_x += midrank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_x - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


# -- alerts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionAlert:
    """An optimization that got slower, with the evidence and what to do about it.

    `kind`: ``slower_than_original`` (recent optimized vs recent original calls),
    ``slower_than_baseline`` (the latest run's optimized calls vs earlier runs'), or
    ``performance_gate`` (the gate switched it off).
    """

    function: str
    degradation_percent: float
    recommendation: str
    kind: str = "slower_than_original"
    current_median: float | None = None
    reference_median: float | None = None
    samples: int = 0
    reference_samples: int = 0
    p_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- hooks ----------------------------------------------------------------------------------------


def _plugin_manager():
    """The active plugin manager, or None when the plugin is not activated in this process.

    Only looks at an already imported ``activation`` module: the monitor never triggers the
    activation machinery (pandas, entry points) itself.
    """
    activation = sys.modules.get("freqtrade_opt_plugin.activation")
    try:
        return activation.plugin_manager() if activation is not None else None
    except AttributeError:
        return None


_hook_failures: set[tuple[str, str]] = set()


def call_hook(hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of a ``freqtrade_opt_*`` hook; never raises.

    Each implementation is called on its own, so one that raises (logged once) does not keep
    the others from receiving the data.
    """
    try:
        pm = _plugin_manager()
        caller = getattr(pm.hook, hook_name, None) if pm is not None else None
        impls = caller.get_hookimpls() if caller is not None else ()
    except Exception:
        logger.debug("freqtrade-opt: no plugin manager for %s", hook_name, exc_info=True)
        return
    for impl in reversed(impls):  # pluggy's order: last registered first
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Exception:
            if (hook_name, impl.plugin_name) not in _hook_failures:
                _hook_failures.add((hook_name, impl.plugin_name))
                logger.warning("freqtrade-opt: the %s hook implementation of plugin '%s' failed",
                               hook_name, impl.plugin_name, exc_info=True)


# -- the monitor ----------------------------------------------------------------------------------

def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"


def current_run() -> tuple[str, bool]:
    """The run this process belongs to: (run id, whether this process started it).

    A process inherits the run of the process that exported one (`Monitor.start_run`, called
    when Freqtrade's Backtesting is created: the main process of a backtest or hyperopt), so
    hyperopt workers count in their main process's run. Otherwise it starts its own, without
    exporting it (a harness that merely imports the plugin does not capture its subprocesses).
    """
    run = os.environ.get(RUN_ENV)
    if run:
        return run, False
    return _new_run_id(), True


class Monitor:
    """Aggregation of call records: one `PathStats` per function and path, flushed in batches."""

    def __init__(
        self,
        settings: MonitorSettings | None = None,
        *,
        store_path: Path | None = None,
        run_id: str | None = None,
        owns_run: bool = False,
    ) -> None:
        self.settings = settings or load_settings()
        self._store_path = store_path  # None: state_dir() / FILENAME, resolved at each use
        self._store: TelemetryStore | None = None
        if run_id is None:
            run_id, owns_run = current_run()
        self.run_id = run_id
        self.owns_run = owns_run
        self.run_started = time.time()
        self._run_exported = False
        self._lock = threading.Lock()  # guards the list of tables, not the counters
        self._flush_lock = threading.Lock()
        self._tls = threading.local()
        self._tables: list[dict[tuple[str, str], PathStats]] = []  # one per recording thread
        self._window = self.settings.window
        self._unflushed = 0  # approximate under threads: only decides when to flush
        self._last_flush = _monotonic()
        self._flush_every = self.settings.flush_every
        self._flush_interval = self.settings.flush_interval
        self._samples_per_flush = self.settings.samples_per_flush
        rate = self.settings.memory_sample_rate
        self._mem_every = max(1, round(1 / rate)) if rate > 0 else 0
        self._mem_counts: dict[str, int] = {}
        self._mem_spent: dict[str, float] = {}  # seconds spent in traced calls, per name
        self._mem_factor: dict[str, float] = {}  # last traced call / median call, per name
        self._disabled: dict[str, str] = {}
        self._watched: dict[str, tuple[Optimization, Callable[[str, str], None] | None]] = {}
        self._gate_fired: set[str] = set()
        self._status_provider: Callable[[], dict[str, Any]] | None = None
        self._record_failed = False
        self._last_gate_ratio: dict[str, float] = {}
        self._drains: list[Callable[[bool], None]] = []  # hot Routers' untimed calls

    # -- the hot path ----------------------------------------------------------------------------

    def record(
        self,
        name: str,
        path: str,
        seconds: float,
        *,
        error: bool = False,
        fallback: bool = False,
        peak_bytes: int | None = None,
        calls: int = 1,
        timed: bool = True,
    ) -> None:
        """Count one call of `name` on `path` ("optimized" or "original"). Never raises.

        `peak_bytes`: the peak traced allocation of a memory-sampled call (see the module doc).
        `calls` > 1 (sampled recording, see `hot_router`): this record stands for `calls` calls
        of which one took `seconds`: `calls` counts them all, `total_seconds` grows by
        ``seconds * calls`` (an extrapolation), the timing statistics get the one sample.
        `timed=False`: the calls were not timed (`seconds` is an estimate per call): counted in
        `calls` and `total_seconds` only.
        Lock-free: each thread counts in its own table (merged when read or flushed).
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
            self._unflushed += 1
            if (
                self._unflushed >= self._flush_every
                or _monotonic() - self._last_flush >= self._flush_interval
            ):
                self.flush()
        except Exception:
            if not self._record_failed:
                self._record_failed = True
                logger.warning("freqtrade-opt: could not record a call of %r on path %r",
                               name, path, exc_info=True)

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
        """Register a sampled recorder's `drain(discard)`: it records the calls it counted but
        has not recorded yet (or, with ``discard=True`` in a forked child, forgets them). Called
        before every read of the counters (views, flush), so sampled counts stay exact."""
        self._drains.append(drain)

    def _drain(self, discard: bool = False) -> None:
        for drain in list(self._drains):
            try:
                drain(discard)
            except Exception:
                logger.debug("freqtrade-opt: a telemetry drain failed", exc_info=True)

    def _items(self) -> list[tuple[str, str, PathStats]]:
        """(name, path, stats) of every thread's table."""
        self._drain()
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

    # -- in-process views ------------------------------------------------------------------------

    def stats(self, name: str) -> dict[str, PathStats]:
        """This process's stats of `name` per path ("optimized", "original"). Read only."""
        parts: dict[str, list[PathStats]] = {p: [] for p in PATHS}
        for n, p, s in self._items():
            if n == name:
                parts[p].append(s)
        return {
            p: PathStats.merged(found, self._window) if found else PathStats(self._window)
            for p, found in parts.items()
        }

    def names(self) -> list[str]:
        return sorted({n for n, _, _ in self._items()})

    def reset(self, name: str | None = None) -> None:
        """Forget this process's stats of `name` (or all), without touching the store."""
        self._drain()  # pending sampled calls belong to the stats being forgotten (or kept)
        with self._lock:
            tables = list(self._tables)
        for table in tables:
            for key in [k for k in list(table) if name is None or k[0] == name]:
                table.pop(key, None)
        for key in [name] if name is not None else list(self._mem_counts):
            self._mem_counts.pop(key, None)
            self._mem_spent.pop(key, None)
            self._mem_factor.pop(key, None)
        if name is None:
            self._gate_fired.clear()
        else:
            self._gate_fired.discard(name)
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
                "disabled": self._disabled.get(name),
            }
        return out

    def local_view(self) -> dict[str, dict[str, tuple[Totals, list[float], list[int]]]]:
        """This process's data per name and path: (totals, clean timings, memory peaks)."""
        view = {}
        for name in self.names():
            view[name] = {
                path: (
                    Totals(name, path, st.calls, st.errors, st.fallbacks, st.total_seconds,
                           st.timed_calls, st.timed_seconds, st.mem_samples, st.mem_peak_sum,
                           st.mem_peak_max),
                    _copy(st.recent),
                    _copy(st.mem_recent),
                )
                for path, st in self.stats(name).items()
            }
        return view

    # -- store -----------------------------------------------------------------------------------

    def store_path(self) -> Path:
        return self._store_path or paths.state_dir() / FILENAME

    def store(self) -> TelemetryStore | None:
        """The store for the current state directory, or None when persistence is off."""
        if not self.settings.persist:
            return None
        path = self.store_path()
        store = self._store
        if store is None or store.path != path:
            s = self.settings
            store = self._store = TelemetryStore(
                path, max_samples=s.max_samples, max_runs=s.max_runs,
                max_store_mb=s.max_store_mb, busy_timeout=s.busy_timeout,
            )
        return store

    def usable_store(self) -> TelemetryStore | None:
        store = self.store()
        return store if store is not None and store.available else None

    def _collect(self) -> tuple[list[PathDelta], list[tuple[PathStats, tuple]]]:
        """Deltas since the last flush and the marks to set once they are persisted."""
        merged: dict[tuple[str, str], PathDelta] = {}
        marks: list[tuple[PathStats, tuple]] = []
        for name, path, s in self._items():
            old = s.flushed
            now = tuple(getattr(s, f) for f in _STAT_FIELDS)
            if now[0] == old[0] and now[6] == old[6]:
                continue
            recent, mem_recent = _copy(s.recent), _copy(s.mem_recent)
            new_timings = min(now[8] - old[8], len(recent))
            new_peaks = min(now[9] - old[9], len(mem_recent))
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
            if new_timings:
                d.timings.extend(_spread(recent[-new_timings:], self._samples_per_flush))
            if new_peaks:
                d.peaks.extend(_spread(mem_recent[-new_peaks:], self._samples_per_flush))
            marks.append((s, now))
        return list(merged.values()), marks

    def flush(self) -> bool:
        """Write what was recorded since the last flush; run the watched performance gates.

        Returns False when the records could not be written now (they are kept for the next
        flush) or another thread is flushing. Never raises.
        """
        if not self._flush_lock.acquire(blocking=False):
            return False
        try:
            deltas, marks = self._collect()
            self._unflushed = 0
            self._last_flush = _monotonic()
            store = self.usable_store()
            written = True
            if store is not None and deltas:
                written = store.write(
                    self.run_id, deltas, run_started=self.run_started, system=self.status(),
                )
                if not written and not store.available:
                    written = True  # permanent failure: the records live on in memory only
            if written:
                for stats, mark in marks:
                    stats.flushed = mark
                if deltas:
                    call_hook("freqtrade_opt_records", records=deltas)
            self._refresh_disabled(store)
            self._run_gates({d.name for d in deltas})
            return written
        except Exception:
            logger.warning("freqtrade-opt: telemetry flush failed", exc_info=True)
            return False
        finally:
            self._flush_lock.release()

    def close(self) -> None:
        """Final flush (at exit); the process that started the run also logs its regressions."""
        self.flush()
        if not self.owns_run:
            return
        names = set(self.names())
        store = self.usable_store()
        if store is not None:
            names |= {t.name for t in store.totals(self.run_id)}
        if not names:
            return
        for alert in detect_performance_regressions(monitor=self, names=names):
            logger.warning("freqtrade-opt: performance regression: %s", alert.recommendation)

    def start_run(self) -> str:
        """Make this process the top of a run and export its id to the processes it starts.

        Idempotent. Called when Freqtrade's Backtesting is created (main process of a backtest
        or hyperopt; workers are unpickled, not created) and by `OptimizationMixin`. A process
        that had inherited a run id (started by another run's process) starts a new run.
        """
        if not self._run_exported:
            if not self.owns_run:
                self.run_id, self.owns_run = _new_run_id(), True
                self.run_started = time.time()
            os.environ[RUN_ENV] = self.run_id
            self._run_exported = True
        return self.run_id

    def after_fork(self) -> None:
        """In a forked child: start empty (the parent flushes its own records)."""
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._tls = threading.local()
        self._tables = []
        self._unflushed = 0
        self._mem_counts = {}
        self._mem_spent = {}
        self._mem_factor = {}
        self._drain(discard=True)  # the parent records its own pending calls
        self._last_flush = _monotonic()
        self.owns_run = False  # the child belongs to its parent's run
        self._run_exported = False
        if self._store is not None:
            self._store.after_fork()

    # -- status, disabled state and gates -------------------------------------------------------

    def set_status_provider(self, provider: Callable[[], dict[str, Any]] | None) -> None:
        """`provider()` -> ``{"level": str, "active": [names]}``, shown in reports."""
        self._status_provider = provider

    def status(self) -> dict[str, Any] | None:
        if self._status_provider is None:
            return None
        try:
            status = dict(self._status_provider())
            return {"level": str(status.get("level")), "active": sorted(status.get("active", []))}
        except Exception:
            logger.debug("freqtrade-opt: status provider failed", exc_info=True)
            return None

    def disable(self, name: str, reason: str) -> None:
        """Switch `name` off persistently (all processes, later runs) until `reset`."""
        known = name in self._disabled
        self._disabled.setdefault(name, reason)
        store = self.usable_store()
        new = False
        if store is not None:
            before = store.disabled()
            new = name not in before and store.disable(name, reason)
            if name in before:
                self._disabled[name] = before[name]
        if new or (store is None and not known):
            call_hook("freqtrade_opt_disabled", name=name, reason=self._disabled[name])

    def disabled(self) -> dict[str, str]:
        """name -> reason of every auto-disabled optimization (store and this process)."""
        store = self.usable_store()
        if store is not None:
            for name, reason in store.disabled().items():
                self._disabled.setdefault(name, reason)
        return dict(sorted(self._disabled.items()))

    def is_disabled(self, name: str) -> str | None:
        """The reason `name` is disabled, from this process's cache (refreshed at each flush)."""
        return self._disabled.get(name)

    def reset_persistent(self, name: str | None = None) -> list[str] | None:
        """Clear the disabled state and the telemetry of `name` (or all) in the store and here."""
        found: set[str] = set(self._disabled) if name is None else (
            {name} if name in self._disabled else set()
        )
        found |= set(self.names()) if name is None else ({name} & set(self.names()))
        for key in list(found) if name is None else [name]:
            self._disabled.pop(key, None)
        self.reset(name)
        store = self.store()
        if store is None:
            return sorted(found)
        result = store.reset(name)
        if result is None:
            return None
        return sorted(found | set(result))

    def watch(self, opt: Optimization, on_fail: Callable[[str, str], None] | None = None) -> None:
        """Evaluate `opt`'s performance gate at every flush that brought it new records.

        When it fails (or another process disabled it), ``on_fail(name, reason)`` is called
        (e.g. the flags' ``disable``); without `on_fail` the monitor's own `disable` is used.
        """
        self._watched[opt.name] = (opt, on_fail)

    def unwatch(self, name: str) -> None:
        self._watched.pop(name, None)

    def _refresh_disabled(self, store: TelemetryStore | None) -> None:
        if store is None:
            return
        for name, reason in store.disabled().items():
            self._disabled.setdefault(name, reason)
            entry = self._watched.get(name)
            if entry is not None and name not in self._gate_fired:
                self._gate_fired.add(name)
                if entry[1] is not None:
                    entry[1](name, reason)

    def _run_gates(self, names: set[str]) -> None:
        for name in names & set(self._watched):
            if name in self._gate_fired or name in self._disabled:
                continue
            opt, on_fail = self._watched[name]
            reason = self.gate(opt)
            if reason is None:
                continue
            self._gate_fired.add(name)
            if on_fail is not None:
                on_fail(name, reason)
            self.disable(name, reason)
            ratio = self._last_gate_ratio.get(name)
            call_hook(
                "freqtrade_opt_regression",
                alert=RegressionAlert(
                    function=name,
                    degradation_percent=round((ratio - 1) * 100, 2) if ratio else 0.0,
                    recommendation=f"'{name}' was switched off by its performance gate: {reason}. "
                    f"`freqtrade-opt reset {name}` re-enables it.",
                    kind="performance_gate",
                ),
            )

    def samples(
        self, name: str, path: str, *, limit: int, run: str | None = None,
        exclude_run: str | None = None,
    ) -> list[float]:
        """Newest clean durations of (name, path): from the store, else from this process."""
        store = self.usable_store()
        if store is not None and store.exists():
            return store.timings(name, path, limit=limit, run=run, exclude_run=exclude_run)
        if exclude_run is not None and exclude_run == self.run_id:
            return []
        if run is not None and run != self.run_id:
            return []
        recent = self.stats(name)[path].recent
        return list(islice(reversed(_copy(recent)), limit))

    def gate(self, opt: Optimization) -> str | None:
        """The disable reason when `opt`'s optimized/original median ratio fails its threshold.

        Needs ``opt.min_samples`` clean calls on each path (the newest ``recent`` are used), a
        median ratio above ``opt.performance_threshold`` and a significant rank test of
        optimized > threshold x original (so noise around the threshold does not flap).
        """
        limit = max(self.settings.recent, opt.min_samples)
        fast = self.samples(opt.name, "optimized", limit=limit)
        base = self.samples(opt.name, "original", limit=limit)
        if len(fast) < opt.min_samples or len(base) < opt.min_samples:
            return None
        m_fast, m_base = statistics.median(fast), statistics.median(base)
        if m_base <= 0:
            return None
        ratio = m_fast / m_base
        threshold = opt.performance_threshold
        if ratio <= threshold:
            return None
        p = rank_test_greater(fast, [v * threshold for v in base])
        if p >= self.settings.alpha:
            return None
        self._last_gate_ratio[opt.name] = ratio
        return (
            f"optimized/original median time ratio {ratio:.2f} > threshold {threshold:.2f} "
            f"({fmt_seconds(m_fast)} vs {fmt_seconds(m_base)}, {len(fast)}/{len(base)} calls, "
            f"p={p:.1g})"
        )


def fmt_seconds(value: float | None) -> str:
    """A duration for people: ns, µs, ms or s with 3 significant digits."""
    if value is None:
        return "-"
    magnitude = abs(value)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if magnitude >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def start_run() -> str:
    """Make this process the top of a run (see `Monitor.start_run`); the run id."""
    return _monitor.start_run()


def start_memory_trace() -> None:
    """Start tracing allocations for one memory-sampled call."""
    tracemalloc.start()


def stop_memory_trace() -> int:
    """Stop tracing; the peak traced allocation (bytes) since `start_memory_trace`."""
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


# -- the process-wide monitor and the module-level API -------------------------------------------

_monitor = Monitor()


def get_monitor() -> Monitor:
    """The process-wide monitor."""
    return _monitor


def _at_exit() -> None:
    try:
        _monitor.close()
    except Exception:  # never fail an interpreter's exit
        logger.debug("freqtrade-opt: final flush failed", exc_info=True)


def _after_fork_in_child() -> None:
    _monitor.after_fork()


def _register_process_hooks() -> None:
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    try:  # multiprocessing fork children leave through os._exit: atexit does not run there
        import multiprocessing.util as mp_util

        def _finalize_in_child(monitor: Monitor) -> None:
            mp_util.Finalize(monitor, _at_exit, exitpriority=100)

        mp_util.register_after_fork(_monitor, _finalize_in_child)
    except Exception:
        logger.debug("freqtrade-opt: no multiprocessing exit hook", exc_info=True)


_register_process_hooks()


def disable(name: str, reason: str) -> None:
    """Persistently disable optimization `name` with `reason` (see `Monitor.disable`)."""
    _monitor.disable(name, reason)


def disabled() -> dict[str, str]:
    """name -> reason of every auto-disabled optimization, read from the store."""
    return _monitor.disabled()


def reset(name: str | None = None) -> list[str]:
    """Clear the disabled state and telemetry of `name` (or everything); the names cleared."""
    return _monitor.reset_persistent(name) or []


def check_performance_gate(opt: Optimization) -> str | None:
    """The disable reason when `opt` fails its performance gate, else None. No side effects
    beyond a flush: the caller disables (e.g. ``flags.disable(opt.name, reason)``)."""
    _monitor.flush()
    return _monitor.gate(opt)


def detect_performance_regressions(
    threshold_percent: float = 10.0,
    *,
    monitor: Monitor | None = None,
    names: set[str] | None = None,
    notify: bool = True,
) -> list[RegressionAlert]:
    """Optimizations whose optimized path got slower by more than `threshold_percent`.

    Two comparisons per optimization, each needing ``min_samples`` clean calls per side, a median
    degradation above the threshold, and a significant one-sided rank test of current > (1 +
    threshold) x reference:
    1. the newest optimized calls against the newest original calls (same machine, usually the
       same inputs: the direct question "is the replacement still faster?");
    2. the latest run's optimized calls against earlier runs' (the stored baseline).
    With `notify`, each alert also goes to the ``freqtrade_opt_regression`` hook.
    """
    mon = monitor or _monitor
    mon.flush()
    s = mon.settings
    factor = 1 + threshold_percent / 100
    store = mon.usable_store()
    if names is None:
        names = set(mon.names()) | (set(store.names()) if store is not None else set())
    alerts: list[RegressionAlert] = []
    for name in sorted(names):
        env = "FREQTRADE_OPT_" + name.upper()
        current = mon.samples(name, "optimized", limit=s.recent)
        original = mon.samples(name, "original", limit=s.recent)
        alert = _compare(name, current, original, factor, s, "slower_than_original")
        if alert is not None:
            alerts.append(
                RegressionAlert(
                    **{**alert, "recommendation": (
                        f"'{name}': the optimized path is {alert['degradation_percent']:.0f}% "
                        f"slower than the original (median {fmt_seconds(alert['current_median'])}"
                        f" vs {fmt_seconds(alert['reference_median'])}). Turn it off with "
                        f"{env}=false and report it; its performance gate switches it off "
                        "automatically once the ratio passes its threshold."
                    )}
                )
            )
        latest = store.latest_run(name, "optimized") if store is not None else mon.run_id
        if latest is None:
            continue
        recent_run = mon.samples(name, "optimized", limit=s.recent, run=latest)
        baseline = mon.samples(name, "optimized", limit=s.max_samples, exclude_run=latest)
        alert = _compare(name, recent_run, baseline, factor, s, "slower_than_baseline")
        if alert is not None:
            alerts.append(
                RegressionAlert(
                    **{**alert, "recommendation": (
                        f"'{name}': the optimized path is {alert['degradation_percent']:.0f}% "
                        "slower than in earlier runs (median "
                        f"{fmt_seconds(alert['current_median'])} vs baseline "
                        f"{fmt_seconds(alert['reference_median'])}). Expected if the "
                        "data size, Freqtrade or pandas changed; otherwise run the benchmarks and "
                        f"consider {env}=false."
                    )}
                )
            )
    if notify:
        for alert in alerts:
            call_hook("freqtrade_opt_regression", alert=alert)
    return alerts


def _compare(
    name: str,
    current: Sequence[float],
    reference: Sequence[float],
    factor: float,
    settings: MonitorSettings,
    kind: str,
) -> dict[str, Any] | None:
    if len(current) < settings.min_samples or len(reference) < settings.min_samples:
        return None
    m_cur, m_ref = statistics.median(current), statistics.median(reference)
    if m_ref <= 0 or m_cur / m_ref <= factor:
        return None
    p = rank_test_greater(current, [v * factor for v in reference])
    if p >= settings.alpha:
        return None
    return {
        "function": name,
        "degradation_percent": round((m_cur / m_ref - 1) * 100, 2),
        "kind": kind,
        "current_median": m_cur,
        "reference_median": m_ref,
        "samples": len(current),
        "reference_samples": len(reference),
        "p_value": p,
    }


# -- reports (built in `report`) -----------------------------------------------------------------


def generate_performance_report(
    *,
    run: str | None = None,
    threshold_percent: float = 10.0,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Everything the monitor knows, as a JSON-ready dict (see `report.build_report`).

    Keys: ``top_performers`` ([{function, improvement_percent, speedup, time_saved_seconds}],
    best first), ``performance_regressions``, ``system`` (level, active and disabled
    optimizations, total time saved, adoption, store), ``recommendations`` and ``functions``
    (per optimization and path: calls, errors, fallbacks, mean / median / p95 / total, memory).
    """
    from freqtrade_opt_plugin.report import build_report

    return build_report(run=run, threshold_percent=threshold_percent, monitor=monitor or _monitor)


def register_cli(subparsers: Any) -> None:
    """Add the ``report`` and ``reset`` subcommands (see `freqtrade_opt_plugin.report`)."""
    from freqtrade_opt_plugin.report import register_cli as _register

    _register(subparsers)
