"""The process-wide telemetry monitor and its module-level API.

The Router calls `Monitor.record` once per routed call (wall time and thread CPU time); records
are flushed in batches to the store shared by every process of every run. What each part does
lives in the `freqtrade_opt_plugin.telemetry` wing (counters, store, analysis, report data,
sinks); this module creates the one `Monitor` of the process, registers its exit and fork hooks,
and keeps the public names importable from here.

Settings: ``FREQTRADE_OPT_MONITOR_*`` over the config's ``freqtrade_opt.monitor`` (handed down to
workers), read by the plugin's settings loader; the monitor takes the section again when this
process learns Freqtrade's config (`settings.follow_section`).

Hooks: activation hands its plugin manager to the monitor (`Monitor.set_plugin_manager`); until
then, and after deactivation, records and alerts go to no plugin.
"""

from __future__ import annotations

import atexit
import logging
import os
import tracemalloc
from typing import TYPE_CHECKING, Any

from freqtrade_opt_plugin import settings
from freqtrade_opt_plugin.telemetry.analysis import RegressionAlert
from freqtrade_opt_plugin.telemetry.counters import PATHS, PathStats, quantile
from freqtrade_opt_plugin.telemetry.fmt import fmt_seconds
from freqtrade_opt_plugin.telemetry.recorder import RUN_ENV, Monitor, current_run
from freqtrade_opt_plugin.telemetry.settings import (
    ENV_PREFIX,
    WINDOW,
    MonitorSettings,
    load_settings,
)


if TYPE_CHECKING:
    from freqtrade_opt_plugin.registry import Optimization


logger = logging.getLogger(__name__)

__all__ = [
    "ENV_PREFIX", "PATHS", "RUN_ENV", "WINDOW", "Monitor", "MonitorSettings", "PathStats",
    "RegressionAlert", "check_performance_gate", "current_run", "detect_performance_regressions",
    "disable", "disabled", "fmt_seconds", "generate_performance_report", "get_monitor",
    "load_settings", "quantile", "reset", "start_memory_trace", "start_run",
    "stop_memory_trace",
]


def start_memory_trace() -> None:
    """Start tracing allocations for one memory-sampled call."""
    tracemalloc.start()


def stop_memory_trace() -> int:
    """Stop tracing; the peak traced allocation (bytes) since `start_memory_trace`."""
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


# -- the process-wide monitor --------------------------------------------------------------------

_monitor = Monitor()


def get_monitor() -> Monitor:
    """The process-wide monitor."""
    return _monitor


def _at_exit() -> None:
    try:
        _monitor.close()
    except Exception:  # never fail an interpreter's exit
        logger.warning("freqtrade-opt: the final telemetry flush failed", exc_info=True)


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
settings.follow_section("monitor", MonitorSettings, _monitor.configure)


# -- module-level API ----------------------------------------------------------------------------


def start_run() -> str:
    """Make this process the top of a run (see `Monitor.start_run`); the run id."""
    return _monitor.start_run()


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
    threshold_percent: float | None = None,
    *,
    monitor: Monitor | None = None,
    names: set[str] | None = None,
    notify: bool = True,
    current_run: str | None = None,
) -> list[RegressionAlert]:
    """Optimizations that got slower by more than `threshold_percent` (default: the setting
    ``FREQTRADE_OPT_MONITOR_THRESHOLD_PERCENT``, 15). Rules: `telemetry.analysis`.

    With `notify`, each alert also goes to the ``freqtrade_opt_regression`` hook.
    """
    mon = monitor or _monitor
    mon.flush()
    alerts = mon.detect_regressions(names=names, threshold_percent=threshold_percent,
                                    current_run=current_run)
    if notify:
        for alert in alerts:
            mon.hooks("freqtrade_opt_regression", alert=alert)
    return alerts


def generate_performance_report(
    *,
    run: str | None = None,
    threshold_percent: float | None = None,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Everything the monitor knows, as a JSON-ready dict (see `telemetry.report_data`)."""
    from freqtrade_opt_plugin.telemetry.report_data import build_report

    return build_report(run=run, threshold_percent=threshold_percent, monitor=monitor or _monitor)

