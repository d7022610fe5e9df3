"""The plugin's extension contract: pluggy hook specifications of project ``freqtrade_opt``.

A package extends freqtrade-opt by exposing a module (or object) with `hookimpl`-marked functions
under the entry-point group ``freqtrade_opt``; the built-in optimizations register the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy


if TYPE_CHECKING:
    from collections.abc import Sequence

    from freqtrade_opt_plugin.monitor import RegressionAlert
    from freqtrade_opt_plugin.registry import Optimization
    from freqtrade_opt_plugin.telemetry_store import PathDelta

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
    ``fallbacks``, ``total_seconds``, ``timed_calls``, ``timed_seconds``, ``mem_samples``,
    ``mem_peak_sum``, ``mem_peak_max``) and the new samples (``timings`` in seconds, ``peaks`` in
    bytes). Called once per flush (every ``FREQTRADE_OPT_MONITOR_FLUSH_EVERY`` records,
    ``..._FLUSH_INTERVAL`` seconds and at process exit), after the batch reached the store.
    """


@hookspec
def freqtrade_opt_regression(alert: RegressionAlert) -> None:
    """Receive a `RegressionAlert` (``function``, ``degradation_percent``, ``recommendation``,
    ``kind``, medians, sample counts, p-value): from `detect_performance_regressions` (also run at
    the end of a run by the process that started it) and when a performance gate fails."""


@hookspec
def freqtrade_opt_disabled(name: str, reason: str) -> None:
    """An optimization was switched off persistently (error threshold or performance gate).
    Called once, in the process that switched it off."""
