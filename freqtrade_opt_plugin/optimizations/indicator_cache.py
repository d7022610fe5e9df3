"""Indicator reuse for backtesting and hyperopt: `IStrategy.advise_all_indicators` with a cache.

Backtesting (``backtest_one_strategy``), hyperopt (``advise_and_trim``, also per epoch with
``analyze_per_epoch``) and the lookahead/recursive analyses all compute indicators through
``strategy.advise_all_indicators(data)``; live and dry-run never call it (they use
``analyze_ticker``), so live trading is unaffected. The replacement returns, pair by pair, the
frame the original returns, from the 'analysis' cache when an entry for exactly the same inputs
exists (see `freqtrade_opt_plugin.optimizations.reuse.indicators` for the key and for when it
refuses to cache), else by calling the original for that pair and storing the result.

Freqtrade's own informative cache (``InformativeCache``, PR #13354) is created only in dry/live
run modes, so in backtesting it is inactive and the two never overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pandas import DataFrame

from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


_TARGET = "freqtrade.strategy.interface:IStrategy.advise_all_indicators"


Advise = Callable[[Any, dict[str, DataFrame]], dict[str, DataFrame]]


def factory(wrapped: Advise) -> Advise:
    """The replacement in front of `wrapped` (which computes what is not reused)."""

    def advise_all_indicators(self, data: dict[str, DataFrame]) -> dict[str, DataFrame]:
        """
        Populates indicators for given candle (OHLCV) data (for multiple pairs)
        Does not run advise_entry or advise_exit!
        Used by optimize operations only, not during dry / live runs.
        Same result as Freqtrade's original; per-pair results come from the indicator cache when
        nothing they depend on changed.
        """
        from freqtrade_opt_plugin.optimizations.reuse.indicators import cached_advise_all_indicators

        return cached_advise_all_indicators(wrapped, self, data)

    return advise_all_indicators


def _propagates() -> tuple[type[BaseException], ...]:
    from freqtrade.exceptions import StrategyError

    return (StrategyError,)


OPTIMIZATION = Optimization(
    name="indicator_cache",
    target=_TARGET,
    factory=factory,
    priority=100,  # a result cache: a hit returns before any faster computation below runs
    tier=OptimizationLevel.AGGRESSIVE,
    fingerprints={"2026.9": "f1df223d0294fb27"},
    description=(
        "Reuses each pair's indicators from the 'analysis' disk cache when the strategy code, "
        "parameters, state, candles, informative data and config values it reads are unchanged"
    ),
    default_percentage=100,
    performance_threshold=1.0,
    gate_runs=2,  # a cache's gain is its hits and misses together: judge over two runs
    propagates=_propagates(),
    mutates_arguments=False,
    shadow=False,  # it records its own storing run; a shadow run would compare copies by identity
)
