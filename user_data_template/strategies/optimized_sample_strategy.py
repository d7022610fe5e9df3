"""Freqtrade's SampleStrategy with `OptimizationMixin`: identical trades, visible counters.

Run it like any strategy:
    freqtrade backtesting --strategy OptimizedSampleStrategy --config user_data/config.json

The mixin makes sure freqtrade-opt is active even where the start-up auto-load is not
(e.g. ``python -S``), exposes ``self.opt_counters()`` / ``self.opt_report()`` and logs a one-screen
summary when the backtest or hyperopt ends. It changes no trading decision.
"""

from freqtrade.templates.sample_strategy import SampleStrategy

from freqtrade_opt_plugin.mixin import OptimizationMixin


class OptimizedSampleStrategy(OptimizationMixin, SampleStrategy):
    """SampleStrategy, unchanged, plus freqtrade-opt's counters and end-of-run summary."""
