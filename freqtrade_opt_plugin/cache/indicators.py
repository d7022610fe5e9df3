"""Compatibility: indicator reuse lives in `freqtrade_opt_plugin.optimizations.reuse.indicators`."""

from freqtrade_opt_plugin.optimizations.reuse.indicators import (  # noqa: F401
    CACHE_NAME,
    cached_advise_all_indicators,
    indicator_cache_key,
    original_advise_all_indicators,
    strategy_cacheability,
    strategy_identity,
    strategy_sources,
)
