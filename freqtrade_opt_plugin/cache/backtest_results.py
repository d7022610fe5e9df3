"""Compatibility: backtest result reuse lives in
`freqtrade_opt_plugin.optimizations.reuse.backtest_results`."""

from freqtrade_opt_plugin.optimizations.reuse.backtest_results import (  # noqa: F401
    CACHE_NAME,
    OUTPUT_ONLY_KEYS,
    backtest_cache_key,
    backtest_cacheability,
    cached_backtest,
    original_backtest,
)
