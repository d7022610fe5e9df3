"""Backtest result reuse: an identical backtest returns its stored result instead of re-running.

`cached_backtest(original, backtesting, processed, start_date, end_date)` returns what
``Backtesting.backtest`` returns. Lookup is in two steps: the *static key* (below) finds the
*manifest* of the storing run (what it touched at run time, `recording`); the manifest's reads are
evaluated now, and the entry stored under (static key, their values) is the result. Otherwise
`original` runs, recorded, and its result is stored when the recording proves it reusable.

The static key (any change is a different key)
----------------------------------------------
* **the code**: the plugin, Freqtrade, ccxt, pandas, numpy, pyarrow and Python versions, and the
  size and modification time of every file of the installed Freqtrade package; all user code of
  the strategy (`user_code`: its user classes and the user modules they reach) and its state
  (instance attributes, user class attributes, plain-data module globals);
* **the config**: all of it except `OUTPUT_ONLY_KEYS` (export, notes, logging, messaging, the
  config files' names), which count too when the strategy's source names them;
* **the data**: every analysed pair frame in full, the dates, the DataProvider's loaded data and
  the whitelist; **the engine**: every ``Backtesting`` attribute ``backtest()`` reads (fee, tick
  sizes, detail data, trading mode, counters...); **the exchange**: class, markets, tiers, modes.

What the manifest adds: the content of every user file whose code ran, modules imported, env vars
and files read, and the state of the user modules whose code ran (see `recording`).

When it does not store (logged once per reason, listed by ``freqtrade-opt cache status``)
-----------------------------------------------------------------------------------------
* not a ``backtest`` run mode (hyperopt, lookahead/recursive analysis), the webserver, FreqAI, a
  dynamic pairlist, public trades, a ``Backtesting`` subclass;
* the static scan of the strategy's code finds time, randomness, files, network, ``dp.ticker``...;
* the recording refuses the run (clock, randomness, writes, directory listings, network, ...);
* the run changed module-level state or the strategy's attributes, loaded data the key does not
  cover, left trades open, or changed engine state an entry could not restore exactly.

What a hit restores
-------------------
`restore._restore`: the result (equal values, dtypes), counters, ``rejected_dict``, locks (also in
``PairLocks``), wallets (closed profit), and, by running Freqtrade's own
``_get_ohlcv_as_lists``, the DataProvider's analysed frames, ``processed`` as the loop leaves it
and the progress bar. The trade loop is skipped: ``LocalTrade.bt_trades`` is not rebuilt and the
callbacks do not run (nothing they would log appears).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from freqtrade_opt_plugin import runtime_patches
from freqtrade_opt_plugin.cache.caches import MISSING, get_cache, get_settings
from freqtrade_opt_plugin.cache.decorators import make_key
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash
from freqtrade_opt_plugin.optimizations.reuse import recording
from freqtrade_opt_plugin.optimizations.reuse.restore import (
    _engine_state,
    _fallback,
    _make_entry,
    _Refused,
    _restore,
    _verify,
)
from freqtrade_opt_plugin.optimizations.reuse.user_code import _cacheable_plan


logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_NAME",
    "OUTPUT_ONLY_KEYS",
    "backtest_cache_key",
    "backtest_cacheability",
    "cached_backtest",
]

CACHE_NAME = "backtesting"
KEY_SCHEMA = "backtest-manifest/2"
ENTRY_SCHEMA = "backtest-result/2"

#: Config keys that only steer output (files, messages, logs), never a trade.
OUTPUT_ONLY_KEYS = frozenset({
    "original_config", "strategy_list", "export", "exportfilename", "exportdirectory",
    "backtest_cache", "backtest_notes", "backtest_show_pair_list", "backtest_breakdown",
    "telegram", "api_server", "webhook", "discord", "verbosity", "logfile", "print_colorized",
    "freqtrade_opt", "config_files", "config",
})

#: ``Backtesting`` attributes that are not inputs of ``backtest()``: covered by another key part,
#: reset or rebuilt at its start, outputs of earlier calls, or display.
_NOT_INPUTS = frozenset({
    "config", "strategy", "strategylist", "exchange", "dataprovider", "pairlists", "wallets",
    "protections", "progress", "_progress_callback", "_progress_task_overall", "_progress_task",
    "results", "all_bt_content", "analysis_results", "run_ids", "abort", "wallet_captures",
    "rejected_trades", "timedout_entry_orders", "timedout_exit_orders", "canceled_trade_entries",
    "canceled_entry_orders", "replaced_entry_orders", "canceled_exit_orders",
    "replaced_exit_orders",
})
#: The DataProvider's inputs of a backtest (name-mangled private attributes).
_DP_INPUTS = ("_DataProvider__cached_pairs_backtesting", "_DataProvider__producer_pairs_df",
              "_DataProvider__producer_pairs")

#: Strategy attributes a backtest may change that are not the strategy's own state: set by the
#: engine (config, dp, wallets) or Freqtrade's per-run caches.
_STRATEGY_NOT_WATCHED = frozenset({
    "config", "dp", "wallets", "_ft_informative_cache", "_IStrategy__last_candle_seen_per_pair",
    "_cached_grouped_trades_per_pair", "__source__",
})

_lock = threading.Lock()
_stamps: dict[str, str] = {}
#: (markets object, its length, digest) of the last call; holding the object keeps its id unique
_markets_digest: list[tuple[Any, int, str]] = []
_reported: set[str] = set()


# -- when it does not cache --------------------------------------------------------------------
def backtest_cacheability(backtesting: Any) -> str | None:
    """None if `backtesting`'s results may be cached, else the reason they are not."""
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting

    if type(backtesting) is not Backtesting:
        return f"a subclass of Backtesting ({type(backtesting).__qualname__})"
    config = backtesting.config
    if config.get("runmode") != RunMode.BACKTEST or not backtesting._is_backtest_runmode:
        return f"run mode {config.get('runmode')} (only 'backtest' runs are cached)"
    if getattr(backtesting, "_progress_callback", None) is not None:
        return "an interactive backtest (webserver)"
    if (config.get("freqai") or {}).get("enabled", False):
        return "FreqAI is enabled"
    if config.get("enable_dynamic_pairlist", False):
        return "a dynamic pairlist is enabled"
    if (config.get("exchange") or {}).get("use_public_trades", False):
        return "exchange.use_public_trades is on"
    instances = (backtesting, backtesting.exchange, backtesting.wallets, backtesting.dataprovider)
    # Backtesting.backtest itself is what this cache implements (whatever wraps it calls it)
    if patched := runtime_patches.replaced(instances, ignore={"Backtesting.backtest"}):
        return f"Freqtrade code replaced at run time ({', '.join(patched)})"
    return None


# -- the key -----------------------------------------------------------------------------------
def _freqtrade_stamp() -> str:
    """Size and mtime of every file of the installed Freqtrade package (edits change it)."""
    import freqtrade

    root = str(Path(freqtrade.__file__).resolve().parent)
    with _lock:
        if root not in _stamps:
            entries = []
            for directory, subdirs, files in os.walk(root):
                subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
                for name in sorted(files):
                    if name.endswith((".py", ".json")):
                        info = os.stat(os.path.join(directory, name))
                        entries.append((os.path.relpath(os.path.join(directory, name), root),
                                        info.st_size, info.st_mtime_ns))
            _stamps[root] = content_hash(entries)
        return _stamps[root]


def _ccxt_version() -> str:
    import ccxt

    return str(getattr(ccxt, "__version__", "?"))


def _config_part(config: Mapping[str, Any], sources: list[str]) -> str:
    mentioned = {key for key in OUTPUT_ONLY_KEYS
                 if any(f'"{key}"' in source or f"'{key}'" in source for source in sources)}
    kept = {key: value for key, value in config.items()
            if key not in OUTPUT_ONLY_KEYS or key in mentioned}
    try:
        return content_hash(kept, fallback=_fallback)
    except Unhashable as exc:
        raise _Refused(f"a config value cannot be hashed: {exc}") from None


def _engine_part(backtesting: Any) -> str:
    parts = []
    for name, value in vars(backtesting).items():
        if name in _NOT_INPUTS:
            continue
        try:
            parts.append((name, content_hash(value, fallback=_fallback)))
        except Unhashable as exc:
            raise _Refused(f"Backtesting.{name} cannot be hashed: {exc}") from None
    return content_hash(parts)


def _all_markets_digest(markets: Mapping[str, Any]) -> str:
    """Digest of all markets (thousands on a real exchange: orjson, 10x faster than
    `content_hash`; it writes NaN as null, so the markets actually traded are hashed exactly
    as well, see `_exchange_part`). Once per process and markets object."""
    import hashlib

    import orjson

    with _lock:
        digest = next((d for known, size, d in _markets_digest
                       if known is markets and size == len(markets)), None)
    if digest is None:
        try:
            data = orjson.dumps(markets, default=lambda o: f"$repr:{type(o).__qualname__}:{o!r}",
                                option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
            digest = hashlib.sha256(data).hexdigest()
        except (TypeError, orjson.JSONEncodeError):
            digest = content_hash(markets, fallback=_fallback)
        with _lock:
            _markets_digest[:] = [(markets, len(markets), digest)]
    return digest


def _exchange_part(exchange: Any, pairs: list[str]) -> str:
    markets = exchange.markets
    try:
        return content_hash(
            f"{type(exchange).__module__}:{type(exchange).__qualname__}",
            exchange.name,
            _all_markets_digest(markets),
            [(pair, markets.get(pair)) for pair in pairs],
            getattr(exchange, "_leverage_tiers", None),
            exchange.precisionMode,
            exchange.precision_mode_price,
            getattr(exchange, "_ft_has", None),
            getattr(exchange, "trading_mode", None),
            getattr(exchange, "margin_mode", None),
            fallback=_fallback,
        )
    except Unhashable as exc:
        raise _Refused(f"exchange state cannot be hashed: {exc}") from None


def _dataprovider_part(backtesting: Any) -> str:
    dp = backtesting.dataprovider
    try:
        return content_hash(
            [(name, getattr(dp, name, None)) for name in _DP_INPUTS],
            dp.runmode,
            list(backtesting.pairlists.whitelist),
            fallback=_fallback,
        )
    except Unhashable as exc:
        raise _Refused(f"DataProvider data cannot be hashed: {exc}") from None


def _loaded_data(backtesting: Any) -> frozenset:
    """Keys of the backtest data the DataProvider has loaded (to see loads during the loop)."""
    loaded = getattr(backtesting.dataprovider, _DP_INPUTS[0], None) or {}
    return frozenset(loaded)


def backtest_cache_key(backtesting: Any, processed: Mapping[str, pd.DataFrame],
                       start_date: Any, end_date: Any) -> str:
    """The cache key of one ``backtest()`` call; raises `Unhashable` naming what prevents it."""
    from freqtrade_opt_plugin.optimizations.reuse.indicators import (
        strategy_identity,
        strategy_sources,
    )

    reason = backtest_cacheability(backtesting)
    if reason is not None:
        raise Unhashable(reason)
    if not isinstance(processed, dict) or not all(
            type(frame) is pd.DataFrame for frame in processed.values()):
        raise Unhashable("processed is not a dict of DataFrames")
    strategy = backtesting.strategy
    try:
        sources = strategy_sources(strategy)
        configs = [_config_part(backtesting.config, sources)]
        if strategy.config is not backtesting.config:
            configs.append(_config_part(strategy.config, sources))
        return make_key(
            KEY_SCHEMA, _freqtrade_stamp(), _ccxt_version(),
            strategy_identity(strategy),
            configs,
            _engine_part(backtesting),
            _exchange_part(backtesting.exchange,
                           sorted({*processed, *backtesting.pairlists.whitelist})),
            _dataprovider_part(backtesting),
            [(pair, frame) for pair, frame in processed.items()],
            start_date, end_date,
            fallback=_fallback,
        )
    except _Refused as exc:
        raise Unhashable(str(exc)) from None


# -- refusals ----------------------------------------------------------------------------------
def _refuse(reason: str, cache: Any = None) -> None:
    """A backtest that is not stored or reused: logged once per reason, counted (and listed by
    ``freqtrade-opt cache status``) when `cache` is given."""
    if cache is not None:
        cache.refuse(reason)
    if reason not in _reported:
        _reported.add(reason)
        logger.info("freqtrade-opt backtest cache: not stored: %s", reason)


# -- the entry point ---------------------------------------------------------------------------
def cached_backtest(original: Callable[..., dict], backtesting: Any,
                    processed: dict[str, pd.DataFrame], start_date: Any,
                    end_date: Any) -> dict[str, Any]:
    """``backtesting.backtest(processed, start_date, end_date)``, reusing an identical run.

    `original` (what runs without this optimization) runs on a miss, recorded; its exceptions
    propagate unchanged, marked by `router.call_original`. A failure of the caching machinery
    itself raises (the Router then runs `original` on restored arguments).
    """
    from freqtrade_opt_plugin.router import call_original

    settings = get_settings()
    reason = backtest_cacheability(backtesting)  # cheap: checked first (hyperopt epochs)
    cache = get_cache(CACHE_NAME) if settings.enabled and settings.backtests else None
    if reason is not None or cache is None or cache.bypassed is not None:
        if reason is not None:
            _refuse(reason)
        return call_original(original, backtesting, processed, start_date, end_date)
    try:
        manifest_key = backtest_cache_key(backtesting, processed, start_date, end_date)
    except Unhashable as exc:
        _refuse(str(exc), cache)
        return call_original(original, backtesting, processed, start_date, end_date)

    result = _lookup(cache, manifest_key, backtesting, processed)
    if result is not None:
        return result
    return _run_and_store(original, cache, manifest_key, backtesting, processed, start_date,
                          end_date)


def _lookup(cache: Any, manifest_key: str, backtesting: Any,
            processed: dict[str, pd.DataFrame]) -> dict[str, Any] | None:
    manifest = cache.get(manifest_key)
    if manifest is MISSING:
        return None
    try:
        entry_key = make_key(ENTRY_SCHEMA, manifest_key, recording.replay_digest(manifest))
    except Exception as exc:  # noqa: BLE001 - an unusable manifest is a miss
        logger.warning("freqtrade-opt backtest cache: stored manifest unusable (%s); running "
                       "the backtest", exc)
        cache.delete(manifest_key)
        return None
    entry = cache.get(entry_key)
    if entry is MISSING:
        return None
    try:
        result = _restore(backtesting, processed, entry)
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # an unusable entry is a miss
        logger.warning("freqtrade-opt backtest cache: stored result unusable (%s); running "
                       "the backtest", exc)
        cache.delete(entry_key)
        return None
    logger.info("freqtrade-opt: reused the stored result of an identical backtest of %s "
                "(cache 'backtesting', key %s); set FREQTRADE_OPT_CACHE_BACKTESTS=false "
                "to always run it", type(backtesting.strategy).__name__, entry_key[:12])
    return result


def _run_and_store(original: Callable[..., dict], cache: Any, manifest_key: str,
                   backtesting: Any, processed: dict[str, pd.DataFrame], start_date: Any,
                   end_date: Any) -> dict[str, Any]:
    """Run `original` recorded; store its result when the recording proves it reusable."""
    from freqtrade_opt_plugin.router import call_original

    strategy = backtesting.strategy
    plan = _cacheable_plan(strategy, whole=True)
    before = _engine_state(backtesting)
    strategy_before = _strategy_state(strategy)
    loaded_before = _loaded_data(backtesting)
    # Profiled only inside the strategy's own methods: the trade loop runs at full speed.
    recorder = recording.Recorder(plan.namespaces, gate=strategy, gate_classes=plan.classes)
    with recorder:
        result = call_original(original, backtesting, processed, start_date, end_date)
    try:
        record, digest = recorder.finish()
        if _loaded_data(backtesting) != loaded_before:
            raise _Refused("the trade loop loaded data the key does not cover")
        changed = _changed_attributes(strategy_before, _strategy_state(strategy))
        if changed:
            raise _Refused(f"the run changed the strategy's state ({', '.join(changed[:3])}), "
                           "which a stored result would not restore")
        entry = _make_entry(backtesting, result, before)
        _verify(backtesting, entry, result)
    except (Unhashable, _Refused) as exc:
        _refuse(str(exc), cache)
        return result
    if cache.set(make_key(ENTRY_SCHEMA, manifest_key, digest), entry):
        cache.set(manifest_key, record)
        logger.debug("freqtrade-opt backtest cache: stored the result (key %s)", manifest_key[:12])
    return result


def _strategy_state(strategy: Any) -> dict[str, str]:
    """Per instance attribute of the strategy, a content digest (identity where content fails)."""
    return {name: recording.value_digest(value) for name, value in vars(strategy).items()
            if name not in _STRATEGY_NOT_WATCHED}


def _changed_attributes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return [f"self.{name}" for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name)]


def original_backtest() -> Callable[..., dict]:
    """Freqtrade's own ``Backtesting.backtest`` below any installed router (for benchmarks and
    tests; the replacement is handed what it wraps)."""
    import inspect

    from freqtrade.optimize.backtesting import Backtesting

    return inspect.unwrap(Backtesting.backtest)
