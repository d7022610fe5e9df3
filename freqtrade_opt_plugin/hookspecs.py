"""The plugin's extension contract: pluggy hook specifications of project ``freqtrade_opt``.

A package extends freqtrade-opt by exposing a module (or object) with `hookimpl`-marked functions
under the entry-point group ``freqtrade_opt``; the built-in optimizations register the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy


if TYPE_CHECKING:
    from collections.abc import Sequence

    from freqtrade_opt_plugin.registry import Optimization
    from freqtrade_opt_plugin.telemetry.analysis import RegressionAlert
    from freqtrade_opt_plugin.telemetry.store import PathDelta

PROJECT = "freqtrade_opt"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def freqtrade_opt_register_optimizations() -> list[Optimization]:
    """Return the `Optimization` records this plugin provides.

    Each record brings everything about its optimization: the `factory` (or plain
    `replacement`), `priority` among the optimizations on the same target, the verified
    `fingerprints`, and its `verify_case` / `bench_case` (see `registry.Optimization`).
    Called once per process, when the first Freqtrade module with a target is imported. Import
    heavy dependencies inside the implementation, not at module level. A plugin that raises here
    is skipped (logged); the others still load.
    """


# --- monitoring: receive telemetry and alerts (run in the process that produced them; must be
# quick; an exception is logged once and ignored; none can influence a trading decision) ---

@hookspec
def freqtrade_opt_records(records: Sequence[PathDelta]) -> None:
    """Receive the calls recorded since the previous flush, one `PathDelta` per optimization and
    path: ``name``, ``path`` ("optimized" / "original"), counters (``calls``, ``errors``,
    ``fallbacks``, ``total_seconds``, ``timed_calls``, ``timed_seconds``, ``cpu_calls``,
    ``cpu_seconds``, ``mem_samples``, ``mem_peak_sum``, ``mem_peak_max``) and the new samples
    (``timings`` and ``cpu`` in seconds, ``peaks`` in bytes). Called once per flush (every
    ``FREQTRADE_OPT_MONITOR_FLUSH_EVERY`` records, ``..._FLUSH_INTERVAL`` seconds and at process
    exit), after the batch reached the store.
    """


@hookspec
def freqtrade_opt_regression(alert: RegressionAlert) -> None:
    """Receive a `RegressionAlert` (``function``, ``kind``, ``measure``, ``runs`` and
    ``reference_runs`` compared, ``degradation_percent``, medians, sample counts, p-value,
    ``recommendation``): at the end of a run, in the process that started it, for each slowdown
    that includes that run (rules: `freqtrade_opt_plugin.telemetry.analysis`); from
    `detect_performance_regressions` when asked; and when a performance gate fails (kind
    ``performance_gate``, in the process whose flush judged it)."""


@hookspec
def freqtrade_opt_disabled(name: str, reason: str) -> None:
    """An optimization was switched off persistently (error threshold or performance gate).
    Called once, in the process that switched it off."""


@hookspec
def freqtrade_opt_telemetry_closed() -> None:
    """This process's monitor made its final flush: no more records or alerts will come.

    Called once per process, in that process, at interpreter exit (or when a multiprocessing
    fork child finishes), after its last ``freqtrade_opt_records``. A sink exports what it
    buffered and shuts its exporters down here (its own ``atexit`` handler would run before the
    final flush). An exception is logged once and ignored.
    """
