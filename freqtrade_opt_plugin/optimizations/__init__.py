"""The built-in optimizations, registered through the ``freqtrade_opt`` entry point ``builtin``
exactly as a third-party plugin would register its own. One module (or small package) per
optimization; a module lists one `OPTIMIZATION` or several `OPTIMIZATIONS`."""

from __future__ import annotations

import importlib
import logging

from freqtrade_opt_plugin.hookspecs import hookimpl


logger = logging.getLogger(__name__)

BUILTIN_MODULES = (
    "tick_size", "trade_parallelism", "ohlcv_lists", "max_drawdown", "indicator_cache",
    "backtest_cache", "fast_loop", "trade_math", "p_value", "hyperopt_gc", "report_lines",
    "result_line", "startup_gc", "exit_gc",
)


@hookimpl
def freqtrade_opt_register_optimizations():
    found = []
    for name in BUILTIN_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except Exception as exc:  # e.g. an older Freqtrade without the target module
            logger.warning("freqtrade-opt: built-in optimization module '%s' unavailable: %s",
                           name, exc)
            continue
        # A module registers one optimization (OPTIMIZATION) or several (OPTIMIZATIONS).
        found.extend(getattr(module, "OPTIMIZATIONS", None) or (module.OPTIMIZATION,))
    return found
