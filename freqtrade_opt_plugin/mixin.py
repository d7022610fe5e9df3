"""`OptimizationMixin`: the explicit way for a strategy to use (and see) freqtrade-opt.

    from freqtrade.strategy import IStrategy
    from freqtrade_opt_plugin.mixin import OptimizationMixin

    class MyStrategy(OptimizationMixin, IStrategy):
        ...

What it does, and nothing more:

- **Activates the plugin** when the strategy is created (and when a hyperopt worker unpickles it),
  for setups where the start-up auto-load does not run (``python -S``, a missing ``.pth``).
  Idempotent: with the auto-load active it changes nothing.
- **Exposes the counters**: ``self.opt_counters()`` returns this process's counters per
  optimization (a plain dict, cheap: no I/O; safe to call from ``populate_*``), and
  ``self.opt_report()`` the monitor's full report of the current run (every process of it,
  hyperopt workers included; reads the telemetry store).
- **Logs a one-screen summary** when the process that created the strategy ends, i.e. at the end
  of ``freqtrade backtesting`` / ``hyperopt`` (Freqtrade has no strategy callback for "run
  finished"; hyperopt workers have exited and flushed by then). Set ``opt_summary_at_exit =
  False`` on the class to turn it off.

It overrides no trading callback (``populate_*``, ``custom_*``, ``confirm_*``, ...): only
``__init__`` (which calls ``super().__init__``) and ``__setstate__``. Trading decisions are
exactly those of the strategy without the mixin.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any


logger = logging.getLogger(__name__)

_activation_failed = False
_summary_registered = False
_summary_lock = threading.Lock()
_strategy_names: list[str] = []


def ensure_activated() -> None:
    """Activate the plugin in this process (idempotent); log, never raise, on failure."""
    global _activation_failed
    try:
        from freqtrade_opt_plugin import activate
    except ImportError:
        return
    try:
        activate()
    except Exception:
        if not _activation_failed:
            _activation_failed = True
            logger.warning("freqtrade-opt: activation from OptimizationMixin failed; the strategy "
                           "runs with Freqtrade's original functions", exc_info=True)


def _start_run() -> None:
    """The strategy is created in a run's main process: export the run id to its workers."""
    try:
        from freqtrade_opt_plugin.monitor import get_monitor

        get_monitor().start_run()
    except Exception:
        logger.debug("freqtrade-opt: no run id exported", exc_info=True)


def _register_summary(strategy_name: str) -> None:
    global _summary_registered
    with _summary_lock:
        if strategy_name not in _strategy_names:
            _strategy_names.append(strategy_name)
        if not _summary_registered:
            _summary_registered = True
            atexit.register(log_summary)


def summary_lines(report: dict[str, Any], *, max_recommendations: int = 4) -> list[str]:
    """A compact, one-screen text summary of a `generate_performance_report` dict."""
    from freqtrade_opt_plugin.monitor import fmt_seconds

    system = report["system"]
    functions = report["functions"]
    rate = system["adoption_rate"]
    processes = system.get("processes_in_run")
    lines = [
        f"freqtrade-opt summary ({system['scope']}"
        + (f", {processes} process{'es' if processes != 1 else ''}" if processes else "")
        + f"): {system['total_calls']} routed calls, "
        + (f"{100 * rate:.1f}% optimized" if rate is not None else "none optimized")
        + (", time saved: not measured (no original-path timings)"
           if system["total_time_saved_seconds"] is None
           else f", time saved ~{fmt_seconds(system['total_time_saved_seconds'])}"),
    ]
    if functions:
        width = max(12, *(len(f["function"]) for f in functions))
        lines.append(
            f"  {'optimization':<{width}}  {'calls opt/orig':>15}  {'median opt/orig':>21}  "
            f"{'speedup':>7}  {'errors':>6}  status"
        )
    for f in functions:
        opt, orig = f["optimized"], f["original"]
        status = "disabled: " + f["disabled"] if f["disabled"] else (
            "active" if opt["calls"] else "original only"
        )
        medians = f"{fmt_seconds(opt['median_seconds'])} / {fmt_seconds(orig['median_seconds'])}"
        speedup = "-" if f["speedup"] is None else f"{f['speedup']:.2f}x"
        lines.append(
            f"  {f['function']:<{width}}  {opt['calls']:>7}/{orig['calls']:<7}  {medians:>21}  "
            f"{speedup:>7}  {opt['errors'] + orig['errors']:>6}  {status}"
        )
    for alert in report["performance_regressions"]:
        lines.append(f"  ! {alert['function']}: {alert['degradation_percent']:+.0f}% "
                     f"({alert['kind']})")
    recommendations = report["recommendations"]
    for text in recommendations[:max_recommendations]:
        lines.append(f"  > {text}")
    if len(recommendations) > max_recommendations:
        lines.append(f"  > ... {len(recommendations) - max_recommendations} more: "
                     "`freqtrade-opt report`")
    return lines


def log_summary() -> None:
    """Log the summary of the current run (registered at exit by the mixin). Never raises."""
    try:
        from freqtrade_opt_plugin.monitor import generate_performance_report, get_monitor

        monitor = get_monitor()
        report = generate_performance_report(run=monitor.run_id, monitor=monitor)
        if not report["functions"]:
            logger.info("freqtrade-opt summary (%s): no routed calls recorded",
                        ", ".join(_strategy_names) or "strategy")
            return
        for line in summary_lines(report):
            logger.info("%s", line)
    except Exception:
        logger.debug("freqtrade-opt: no end-of-run summary", exc_info=True)


class OptimizationMixin:
    """Mix into a strategy before `IStrategy`: ``class MyStrategy(OptimizationMixin, IStrategy)``.

    See the module docstring. Public API: `opt_counters()`, `opt_report()`,
    `opt_summary_at_exit`.
    """

    #: log a one-screen summary when the process that created this strategy exits
    opt_summary_at_exit: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ensure_activated()
        _start_run()
        super().__init__(*args, **kwargs)
        if self.opt_summary_at_exit:
            _register_summary(type(self).__name__)

    def __setstate__(self, state: Any) -> None:
        # A hyperopt worker unpickles the strategy: make sure the plugin is active there too.
        ensure_activated()
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
            return
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) from copyreg
            state, slots = state
            for key, value in (slots or {}).items():
                setattr(self, key, value)
        if state:
            self.__dict__.update(state)

    def opt_counters(self) -> dict[str, dict[str, Any]]:
        """This process's counters per optimization (no I/O). Per name: ``optimized_calls``,
        ``original_calls``, ``errors``, ``fallbacks``, ``adoption_rate``,
        ``optimized_median_seconds``, ``original_median_seconds``, ``optimized_total_seconds``,
        ``original_total_seconds``, ``memory_samples``, ``disabled`` (reason or None)."""
        try:
            from freqtrade_opt_plugin.monitor import get_monitor

            return get_monitor().counters()
        except Exception:
            logger.debug("freqtrade-opt: counters unavailable", exc_info=True)
            return {}

    def opt_report(self, *, current_run: bool = True) -> dict[str, Any]:
        """The monitor's report (`generate_performance_report`) of the current run, or of every
        stored run with ``current_run=False``. Reads the store: not for per-candle use."""
        from freqtrade_opt_plugin.monitor import generate_performance_report, get_monitor

        monitor = get_monitor()
        return generate_performance_report(
            run=monitor.run_id if current_run else None, monitor=monitor
        )
