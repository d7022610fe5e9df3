"""freqtrade-opt caches: four disk caches keyed by content, never unpickling anything.

Public API (imported lazily: ``import freqtrade_opt_plugin.cache`` stays cheap)::

    from freqtrade_opt_plugin.cache import (
        ohlcv_cached, analysis_cached, temporary_cached, backtesting_cached,  # decorators
        get_cache, get_cache_status, clear_cache, configure,                   # caches
        content_hash, estimate_memory, tick_size_cached, cached_advise_all_indicators,
    )

Caches (size / TTL defaults, each overridable by ``FREQTRADE_OPT_CACHE_<NAME>_SIZE_MB`` /
``..._TTL_SECONDS`` or the config section ``freqtrade_opt.cache``): ``ohlcv`` 1024 MB / 2 h,
``analysis`` 200 MB / 1 h, ``temporary`` 50 MB / 5 min, ``backtesting`` 500 MB / 30 min.
``FREQTRADE_OPT_CACHE_ENABLED=false`` turns all of them off, ``FREQTRADE_OPT_CACHE_DIR`` moves them
(default ``<user_data>/freqtrade_opt/cache``), ``FREQTRADE_OPT_CACHE_INDICATORS=false`` turns off
indicator reuse only. ``FREQTRADE_OPT_CACHE_REDIS_URL`` adds a shared tier on Redis behind them
(``redis_tier.py``; ``pip install "freqtrade-opt-plugin[redis]"``).
"""

from __future__ import annotations

import importlib
from typing import Any


_EXPORTS = {
    "CACHE_NAMES": "settings",
    "CacheSettings": "settings",
    "load_cache_settings": "settings",
    "MISSING": "caches",
    "SpecializedCache": "caches",
    "cache_root": "caches",
    "clear_cache": "caches",
    "configure": "caches",
    "get_cache": "caches",
    "get_cache_status": "caches",
    "get_settings": "caches",
    "RedisTier": "redis_tier",
    "Unhashable": "hashing",
    "content_hash": "hashing",
    "CorruptEntry": "disk",
    "NotCacheable": "disk",
    "SafeDisk": "disk",
    "estimate_memory": "disk",
    "analysis_cached": "decorators",
    "backtesting_cached": "decorators",
    "cached": "decorators",
    "make_key": "decorators",
    "ohlcv_cached": "decorators",
    "temporary_cached": "decorators",
    "tick_size_cached": "decorators",
    "cached_advise_all_indicators": "indicators",  # compatibility: optimizations.reuse
    "indicator_cache_key": "indicators",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
