"""`Monitor`: the counters plus their store, flushes, run lifecycle, disabled state and gates.

Records reach the persistent store (`telemetry.store`, SQLite under ``state_dir()``) in batches:
every ``flush_every`` records, at the first record after ``flush_interval`` seconds, and when the
process exits (see `freqtrade_opt_plugin.monitor` for the exit hooks). Counters are additive
upserts in one transaction per flush: concurrent writers never lose or double-count a call.

Nothing recorded is lost silently: a flush the store refuses for now (locked by other writers)
keeps its records for the next flush; at exit the final flush waits up to ``busy_timeout`` once
more and, if the store is still locked, one warning says which calls were not stored. Records
made since the last flush are lost unannounced only if the process is killed.

Plugins receive the records, alerts and disables through the injected `HookDispatcher`.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freqtrade_opt_plugin import paths
from freqtrade_opt_plugin.telemetry import analysis
from freqtrade_opt_plugin.telemetry.counters import PATHS, Counters, copy_of
from freqtrade_opt_plugin.telemetry.hooks import HookDispatcher
from freqtrade_opt_plugin.telemetry.settings import MonitorSettings, load_settings
from freqtrade_opt_plugin.telemetry.store import FILENAME, PathDelta, RunData, TelemetryStore


if TYPE_CHECKING:
    from freqtrade_opt_plugin.registry import Optimization


logger = logging.getLogger(__name__)
_monotonic = time.monotonic

RUN_ENV = "_FREQTRADE_OPT_RUN_ID"  # one run = a top-level process and the workers it starts


def new_run_id() -> str:
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
    return new_run_id(), True


class Monitor(Counters):
    """Call records of one process, flushed to the store in batches. See the module doc."""

    def __init__(
        self,
        settings: MonitorSettings | None = None,
        *,
        store_path: Path | None = None,
        run_id: str | None = None,
        owns_run: bool = False,
        hooks: HookDispatcher | None = None,
    ) -> None:
        super().__init__(settings or load_settings())
        self.hooks = hooks or HookDispatcher()
        self._store_path = store_path  # None: state_dir() / FILENAME, resolved at each use
        self._store: TelemetryStore | None = None
        if run_id is None:
            run_id, owns_run = current_run()
        self.run_id = run_id
        self.owns_run = owns_run
        self.run_started = time.time()
        self._run_exported = False
        self._flush_lock = threading.Lock()
        self._last_flush = _monotonic()
        self._flush_every = self.settings.flush_every
        self._flush_interval = self.settings.flush_interval
        self._disabled: dict[str, str] = {}
        self._watched: dict[str, tuple[Optimization, Callable[[str, str], None] | None]] = {}
        self._gate_fired: set[str] = set()
        self._status_provider: Callable[[], dict[str, Any]] | None = None
        self._last_gate_ratio: dict[str, float] = {}

    def set_plugin_manager(self, plugin_manager: Any) -> None:
        """Send records, alerts and disables to this pluggy manager's hooks (None: nowhere)."""
        self.hooks.use(plugin_manager)

    def _after_record(self) -> None:
        if (self._unflushed >= self._flush_every
                or _monotonic() - self._last_flush >= self._flush_interval):
            self.flush()

    def reset(self, name: str | None = None) -> None:
        """Forget this process's stats of `name` (or all), without touching the store."""
        super().reset(name)
        if name is None:
            self._gate_fired.clear()
        else:
            self._gate_fired.discard(name)

    def configure(self, settings: MonitorSettings) -> None:
        """Use `settings` from now on (e.g. the config's ``freqtrade_opt.monitor``, learned after
        this monitor was created). Stats so far are kept; a changed store setting flushes and
        reopens the store."""
        store_keys = ("persist", "max_samples", "run_samples", "max_runs", "max_store_mb",
                      "busy_timeout")
        if any(getattr(settings, k) != getattr(self.settings, k) for k in store_keys):
            self.flush()
            self._store = None
        self._apply_settings(settings)
        self._flush_every = settings.flush_every
        self._flush_interval = settings.flush_interval

    def forget(self) -> None:
        """Forget what this process holds -- stats, the cached disabled state, watched gates and
        the open store (reopened at its next use, at the current state directory) -- leaving the
        store's content alone. For embedders and tests reusing the process-wide monitor."""
        self.reset()
        self._disabled.clear()
        self._watched.clear()
        self._store = None

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
                path, max_samples=s.max_samples, run_samples=s.run_samples, max_runs=s.max_runs,
                max_store_mb=s.max_store_mb, busy_timeout=s.busy_timeout,
            )
        return store

    def usable_store(self) -> TelemetryStore | None:
        store = self.store()
        return store if store is not None and store.available else None

    def flush(self, *, wait: bool = False) -> bool:
        """Write what was recorded since the last flush; run the watched performance gates.

        Returns False when the records could not be written now (they are kept for the next
        flush) or, unless `wait`, another thread is flushing. Never raises.
        """
        if not self._flush_lock.acquire(blocking=wait):
            return False
        try:
            deltas, marks = self.collect(self.settings.samples_per_flush,
                                         self.settings.run_samples)
            self._unflushed = 0
            self._last_flush = _monotonic()
            store = self.usable_store()
            written = True
            if store is not None and deltas:
                written = store.write(
                    self.run_id, deltas, run_started=self.run_started, system=self.status(),
                )
                if not written and not store.available:
                    written = True  # permanent failure (warned): records live on in memory
            if written:
                for stats, mark in marks:
                    stats.flushed = mark
                if deltas:
                    self.hooks("freqtrade_opt_records", records=deltas)
            self._refresh_disabled(store)
            self._run_gates({d.name for d in deltas})
            return written
        except Exception:
            logger.warning("freqtrade-opt: telemetry flush failed", exc_info=True)
            return False
        finally:
            self._flush_lock.release()

    def close(self) -> None:
        """Final flush (at exit); the process that started the run also logs its regressions.

        A store still locked after one more ``busy_timeout`` gets one warning naming what was
        not stored (the calls are counted in this process's summary only).
        """
        if not self.flush(wait=True) and not self.flush(wait=True):
            deltas, _ = self.collect(1, 1)
            lost = ", ".join(f"{d.name}/{d.path}: {d.calls}" for d in deltas if d.calls)
            if lost:
                logger.warning(
                    "freqtrade-opt: the telemetry store %s stayed locked at exit; these calls of "
                    "this process were not stored: %s", self.store_path(), lost,
                )
        try:
            self._report_run_regressions()
        finally:
            self.hooks("freqtrade_opt_telemetry_closed")

    def _report_run_regressions(self) -> None:
        if not self.owns_run:
            return
        names = {n for n in self.names() if self.stats(n)["optimized"].calls}
        store = self.usable_store()
        if store is not None:
            names |= {t.name for t in store.totals(self.run_id)
                      if t.path == "optimized" and t.calls}
        if not names:
            return
        for alert in self.detect_regressions(names=names, current_run=self.run_id):
            logger.warning("freqtrade-opt: performance regression: %s", alert.recommendation)
            self.hooks("freqtrade_opt_regression", alert=alert)

    def start_run(self) -> str:
        """Make this process the top of a run and export its id to the processes it starts.

        Idempotent. Called when Freqtrade's Backtesting is created (main process of a backtest
        or hyperopt; workers are unpickled, not created) and by `OptimizationMixin`. A process
        that had inherited a run id (started by another run's process) starts a new run.
        """
        if not self._run_exported:
            if not self.owns_run:
                self.run_id, self.owns_run = new_run_id(), True
                self.run_started = time.time()
            os.environ[RUN_ENV] = self.run_id
            self._run_exported = True
        return self.run_id

    def after_fork(self) -> None:
        """In a forked child: start empty (the parent flushes its own records)."""
        self._forget_tables()
        self._flush_lock = threading.Lock()
        self._last_flush = _monotonic()
        self.owns_run = False  # the child belongs to its parent's run
        self._run_exported = False
        if self._store is not None:
            self._store.after_fork()

    # -- status and disabled state ---------------------------------------------------------------

    @property
    def status_provider(self) -> Callable[[], dict[str, Any]] | None:
        """What `set_status_provider` set (None: no status is stored)."""
        return self._status_provider

    def set_status_provider(self, provider: Callable[[], dict[str, Any]] | None) -> None:
        """`provider()` -> ``{"level": str, "active": [names]}``, stored per run, in reports."""
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
            self.hooks("freqtrade_opt_disabled", name=name, reason=self._disabled[name])

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

    # -- data for the analyses -------------------------------------------------------------------

    def history(self, name: str, runs: int | None = None) -> list[RunData]:
        """The newest runs of `name`, oldest first: from the store, else this process's run."""
        limit = runs or self.settings.history_runs
        store = self.usable_store()
        if store is not None and store.exists():
            return store.history(name, runs=limit)
        per = self.stats(name)
        if not any(st.calls for st in per.values()):
            return []
        return [RunData(
            self.run_id, self.run_started, self.status(),
            {p: st.totals(name, p) for p, st in per.items()},
            {p: copy_of(st.cpu_recent) for p, st in per.items()},
            {p: copy_of(st.recent) for p, st in per.items()},
        )]

    def samples(
        self, name: str, path: str, *, limit: int, run: str | None = None,
        exclude_run: str | None = None,
    ) -> list[float]:
        """Newest clean wall durations of (name, path): from the store, else this process."""
        store = self.usable_store()
        if store is not None and store.exists():
            return store.timings(name, path, limit=limit, run=run, exclude_run=exclude_run)
        if exclude_run is not None and exclude_run == self.run_id:
            return []
        if run is not None and run != self.run_id:
            return []
        recent = self.stats(name)[path].recent
        return list(islice(reversed(copy_of(recent)), limit))

    def detect_regressions(
        self, *, names: set[str] | None = None, threshold_percent: float | None = None,
        current_run: str | None = None,
    ) -> list[analysis.RegressionAlert]:
        """Alerts of every optimization in `names` (all known), without notifying anyone.

        `current_run`: judge only slowdowns that include this run (the end-of-run check).
        """
        threshold = threshold_percent or self.settings.threshold_percent
        store = self.usable_store()
        if names is None:
            names = set(self.names()) | (set(store.names()) if store is not None else set())
        alerts = []
        for name in sorted(names):
            history = self.history(name)
            if not history:
                continue
            latest = history[-1] if current_run is None else next(
                (r for r in history if r.run == current_run), None)
            for alert in (
                analysis.within_run(name, latest, self.settings, threshold),
                analysis.across_runs(name, history, self.settings, threshold,
                                     current_run=current_run),
            ):
                if alert is not None:
                    alerts.append(alert)
        return alerts

    # -- performance gates -----------------------------------------------------------------------

    def watch(self, opt: Optimization, on_fail: Callable[[str, str], None] | None = None) -> None:
        """Evaluate `opt`'s performance gate at every flush that brought it new records.

        When it fails (or another process disabled it), ``on_fail(name, reason)`` is called
        (e.g. the flags' ``disable``); without `on_fail` the monitor's own `disable` is used.
        """
        self._watched[opt.name] = (opt, on_fail)

    def unwatch(self, name: str) -> None:
        self._watched.pop(name, None)

    def gate(self, opt: Optimization) -> str | None:
        """The disable reason when `opt` fails its performance gate (see `telemetry.analysis`)."""
        verdict = analysis.gate(opt, self.history(opt.name), self.settings)
        if verdict.reason is not None and verdict.ratio is not None:
            self._last_gate_ratio[opt.name] = verdict.ratio
        return verdict.reason

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
            self.hooks(
                "freqtrade_opt_regression",
                alert=analysis.RegressionAlert(
                    function=name,
                    degradation_percent=round((ratio - 1) * 100, 2) if ratio else 0.0,
                    recommendation=f"'{name}' was switched off by its performance gate: {reason}. "
                    f"`freqtrade-opt reset {name}` re-enables it.",
                    kind="performance_gate",
                    runs=(self.run_id,),
                ),
            )


__all__ = ["PATHS", "RUN_ENV", "Monitor", "PathDelta", "current_run", "new_run_id"]
