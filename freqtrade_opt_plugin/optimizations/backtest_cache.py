"""Backtest result reuse: `Backtesting.backtest` returns the stored result of an identical run.

Only ``freqtrade backtesting`` runs are cached (run mode ``backtest``, no webserver); hyperopt
epochs, lookahead and recursive analysis always run the trade loop. The key covers the code, the
strategy's state, the config, the full content of the analysed data and the engine's and
exchange's state, plus what the storing run touched at run time; see
`freqtrade_opt_plugin.optimizations.reuse.backtest_results` for the key, for when it refuses to
cache and for exactly what a hit restores.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


_TARGET = "freqtrade.optimize.backtesting:Backtesting.backtest"


def factory(wrapped: Callable[..., dict]) -> Callable[..., dict]:
    """The replacement in front of `wrapped` (which runs the backtest on a miss)."""

    def backtest(self, processed: dict, start_date: datetime, end_date: datetime):
        """
        Implement backtesting functionality
        Same result as Freqtrade's original; the stored result of an identical earlier backtest
        is returned when every input is unchanged.
        """
        from freqtrade_opt_plugin.optimizations.reuse.backtest_results import cached_backtest

        return cached_backtest(wrapped, self, processed, start_date, end_date)

    return backtest


def _propagates() -> tuple[type[BaseException], ...]:
    from freqtrade.exceptions import DependencyException

    return (DependencyException,)  # "Stop requested" (webserver abort)


OPTIMIZATION = Optimization(
    name="backtest_cache",
    target=_TARGET,
    factory=factory,
    priority=100,  # a result cache: a hit returns before any faster computation below runs
    tier=OptimizationLevel.AGGRESSIVE,
    fingerprints={"2026.9": "96e66894d84adb61"},
    description=(
        "Returns the stored result of an identical backtest (same code, strategy state, config, "
        "data, engine and exchange state) from the 'backtesting' disk cache"
    ),
    default_percentage=100,
    performance_threshold=1.0,
    gate_runs=2,  # a cache's gain is its hits and misses together: judge over two runs
    propagates=_propagates(),
    mutates_arguments=True,
    shadow=False,
)
