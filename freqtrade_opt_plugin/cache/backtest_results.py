"""Backtest result reuse: an identical backtest returns its stored result instead of re-running.

`cached_backtest(backtesting, processed, start_date, end_date, original)` returns what
``Backtesting.backtest`` returns. If the 'backtesting' cache holds the result of a backtest with
exactly the same inputs, that result is returned. Otherwise the original runs and its result is
stored.

What the key covers (any change is a different key)
---------------------------------------------------
* **the code**: the plugin, Freqtrade, ccxt, pandas, numpy, pyarrow and Python versions, and the
  size and modification time of every file of the installed Freqtrade package (so an edited
  source is a new key); all user code of the strategy (`indicators.strategy_identity`: every
  method of its user classes and the user modules they reach, and the versions of the libraries
  those modules import);
* **the strategy's state**: every instance attribute, user class attribute and plain-data module
  global (parameters with their values, ROI, stoploss...);
* **the config**: the whole configuration, except the keys in `OUTPUT_ONLY_KEYS` (export
  settings, notes, logging, chat and API settings). Those keys count too when a string with
  their name appears in the strategy's source;
* **the data**: the full content of every analysed pair frame, in order; the start and end dates;
  the DataProvider's loaded backtest data (informative pairs) and the whitelist;
* **the engine's state**: every attribute of the ``Backtesting`` object that ``backtest()`` reads
  and does not reset, such as fee, tick sizes, detail and futures data, trading and margin mode,
  timerange, and the trade and order id counters. An attribute that cannot be hashed (an unknown
  object) means no caching;
* **the exchange**: its class, markets (those of the pairs traded exactly, all others through a
  JSON digest), leverage tiers, precision modes and feature flags.

When it does not cache (it says why at debug level)
---------------------------------------------------
* the run mode is not ``backtest``, which leaves out hyperopt epochs, lookahead and recursive
  analysis, and the webserver (detected by its progress callback);
* FreqAI, a dynamic pairlist (``enable_dynamic_pairlist``) or ``exchange.use_public_trades``
  is on, or a subclass of ``Backtesting`` is used;
* the strategy's code calls something that depends on time, randomness, files, the network or the
  environment (``now``, ``random``, ``open``, ``requests``, ``dp.ticker``, ``dp.orderbook``...
  anywhere in its methods), or part of its state cannot be hashed;
* the trade loop loaded data that the key does not cover (e.g. ``dp.get_pair_dataframe`` of a new
  pair inside a callback);
* ``backtest()`` changed engine state that a stored result could not restore, or the result would
  not come back identical from disk. This is checked by decoding the entry before it is stored.

What a hit restores and what it does not
----------------------------------------
The returned dict is equal to the original's, with the same keys, values and dtypes. ``config``
is the live strategy config, and ``locks`` are ``PairLock`` objects that are also put back into
``PairLocks``. The engine's counters (rejected signals, timed-out and cancelled orders, trade and
order ids) and ``rejected_dict`` are set to the values the original left behind. In-memory trade
objects (``LocalTrade.bt_trades``) are not rebuilt. The wallet capture list, the state the
strategy's callbacks change and the DataProvider's analysed frames are not rebuilt either. They
are left reset, as at the start of a backtest. Nothing in ``freqtrade backtesting`` reads them
after ``backtest()`` returns; the webserver does, which is why it is excluded. The callbacks do
not run, so anything they would log or print is missing.

Limits (what is trusted, not proven) are the same as for indicator reuse
(`freqtrade_opt_plugin.cache.indicators`): third-party libraries are taken to be deterministic
for a given version, and state hidden inside arbitrary objects is not tracked.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from freqtrade_opt_plugin.cache.caches import MISSING, get_cache, get_settings
from freqtrade_opt_plugin.cache.decorators import make_key
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash


logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_NAME",
    "OUTPUT_ONLY_KEYS",
    "backtest_cache_key",
    "backtest_cacheability",
    "cached_backtest",
]

CACHE_NAME = "backtesting"
KEY_SCHEMA = "backtest-result/1"

#: Config keys that only steer output (files, messages, logs), never a trade.
OUTPUT_ONLY_KEYS = frozenset({
    "original_config", "strategy_list", "export", "exportfilename", "exportdirectory",
    "backtest_cache", "backtest_notes", "backtest_show_pair_list", "backtest_breakdown",
    "telegram", "api_server", "webhook", "discord", "verbosity", "logfile", "print_colorized",
    "freqtrade_opt",
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
#: Reset at the start of ``backtest()`` and counted up by it: always stored with a result.
_COUNTERS = frozenset({
    "rejected_trades", "timedout_entry_orders", "timedout_exit_orders", "canceled_trade_entries",
    "canceled_entry_orders", "replaced_entry_orders", "canceled_exit_orders",
    "replaced_exit_orders", "trade_id_counter", "order_id_counter",
})
#: Changed by ``backtest()`` and not restored from the entry: the wallet captures (see the module
#: docstring) and the protections, which a hit rebuilds the same way (``reset_backtest``).
_NOT_RESTORED = frozenset({"wallet_captures", "protections"})
#: Not watched for changes (besides `_NOT_RESTORED`): display, and outputs of earlier calls that
#: ``backtest()`` ignores.
_NOT_WATCHED = frozenset({"progress", "_progress_task_overall", "_progress_task", "results",
                          "all_bt_content", "analysis_results"})
#: The DataProvider's inputs of a backtest (name-mangled private attributes).
_DP_INPUTS = ("_DataProvider__cached_pairs_backtesting", "_DataProvider__producer_pairs_df",
              "_DataProvider__producer_pairs")
_LOCK_FIELDS = ("id", "pair", "side", "reason", "lock_time", "lock_end_time", "active")

_lock = threading.Lock()
_stamps: dict[str, str] = {}
#: (markets object, its length, digest) of the last call; holding the object keeps its id unique
_markets_digest: list[tuple[Any, int, str]] = []
_reported: set[str] = set()
_internal_errors: list[str] = []


class _Refused(Exception):
    """This backtest's result is not stored or reused (the message says why)."""


def _debug_once(reason: str) -> None:
    if reason not in _reported:
        _reported.add(reason)
        logger.debug("freqtrade-opt backtest cache: not cached: %s", reason)


def _internal_error(exc: BaseException) -> None:
    if not _internal_errors:
        logger.warning("freqtrade-opt backtest cache: internal error (%s: %s); the backtest runs "
                       "normally", type(exc).__name__, exc, exc_info=True)
    _internal_errors.append(repr(exc))


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
    return None


# -- the key -----------------------------------------------------------------------------------
def _fallback(value: Any) -> Any:
    """Content of the non-plain types found in config and engine state."""
    from freqtrade.configuration.timerange import TimeRange

    from freqtrade_opt_plugin.cache.indicators import _fallback as strategy_fallback

    if isinstance(value, TimeRange):
        return dict(vars(value))
    return strategy_fallback(value)


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
    from freqtrade_opt_plugin.cache.indicators import strategy_identity, strategy_sources

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


# -- plain values with dates, as stored JSON ---------------------------------------------------
def _encode_value(value: Any) -> Any:
    """`value` as plain JSON-able data (dates tagged); raises `_Refused` for anything else."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is pd.Timestamp:
        return {"$ts": [value.value, value.unit, None if value.tz is None else str(value.tz)]}
    if kind is _dt.datetime:
        return {"$dt": value.replace(tzinfo=None).isoformat(), "tz": _zone_name(value.tzinfo),
                "fold": value.fold}
    if kind in (list, tuple):
        items = [_encode_value(v) for v in value]
        return items if kind is list else {"$t": items}
    if kind is dict:
        return {"$d": [[_encode_value(k), _encode_value(v)] for k, v in value.items()]}
    raise _Refused(f"a {kind.__qualname__} value")


def _zone_name(tzinfo: Any) -> str | None:
    from zoneinfo import ZoneInfo

    if tzinfo is None:
        return None
    if tzinfo is _dt.UTC:
        return "datetime.UTC"
    if type(tzinfo) is ZoneInfo and tzinfo.key:
        return tzinfo.key
    raise _Refused(f"a datetime with time zone {tzinfo!r}")


def _zone(name: str | None) -> Any:
    from zoneinfo import ZoneInfo

    if name is None:
        return None
    return _dt.UTC if name == "datetime.UTC" else ZoneInfo(str(name))


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    if isinstance(value, dict):
        if "$ts" in value:
            nanoseconds, unit, tz = value["$ts"]
            return pd.Timestamp(int(nanoseconds), unit="ns", tz=tz).as_unit(str(unit))
        if "$dt" in value:
            wall = _dt.datetime.fromisoformat(str(value["$dt"]))
            return wall.replace(tzinfo=_zone(value["tz"]), fold=int(value["fold"]))
        if "$t" in value:
            return tuple(_decode_value(v) for v in value["$t"])
        if "$d" in value:
            return {_decode_value(k): _decode_value(v) for k, v in value["$d"]}
        raise ValueError(f"unknown tagged value {sorted(value)}")
    return value


# -- the stored entry --------------------------------------------------------------------------
def _lock_fields(lock: Any) -> dict[str, Any]:
    return {name: getattr(lock, name) for name in _LOCK_FIELDS}


def _engine_state(backtesting: Any) -> dict[str, str]:
    """Per attribute, a hash to see what a run changes (content, else object identity)."""
    from freqtrade_opt_plugin.cache.indicators import _identity_hash

    return {name: _identity_hash(value) for name, value in vars(backtesting).items()
            if name not in _NOT_WATCHED and name not in _NOT_RESTORED}


def _make_entry(backtesting: Any, result: Mapping[str, Any], before: dict[str, str]) -> tuple:
    """(meta, *frames) for `result`; raises `_Refused` when it could not be restored exactly."""
    from freqtrade.persistence import PairLocks

    after = _engine_state(backtesting)
    changed = sorted(name for name, digest in after.items()
                     if before.get(name) != digest or name in _COUNTERS)
    engine = {}
    for name in changed:
        try:
            engine[name] = _encode_value(getattr(backtesting, name))
        except _Refused as exc:
            raise _Refused(f"backtest() changed Backtesting.{name} ({exc}), which a stored "
                           "result could not restore") from None
    frames: list[pd.DataFrame] = []
    fields: list[list[Any]] = []
    for key, value in result.items():
        if key == "config":
            if value is not backtesting.strategy.config:
                raise _Refused("result['config'] is not the strategy's config")
            fields.append([key, "config", None])
        elif key == "locks":
            if list(value) != list(PairLocks.get_all_locks()):
                raise _Refused("result['locks'] differs from PairLocks")
            fields.append([key, "locks", [_encode_value(_lock_fields(lock)) for lock in value]])
        elif type(value) is pd.DataFrame:
            fields.append([key, "frame", len(frames)])
            frames.append(value)
        else:
            try:
                fields.append([key, "value", _encode_value(value)])
            except _Refused as exc:
                raise _Refused(f"result[{key!r}] is {exc}") from None
    meta = {"fields": fields, "engine": engine}
    return (meta, *frames)


def _restore(backtesting: Any, entry: Any) -> dict[str, Any]:
    """The result dict of a stored entry, with the engine left as the original leaves it."""
    from freqtrade.persistence import PairLocks
    from freqtrade.persistence.pairlock import PairLock

    if type(entry) is not tuple or not entry or type(entry[0]) is not dict:
        raise ValueError("malformed backtest cache entry")
    meta, frames = entry[0], entry[1:]
    result: dict[str, Any] = {}
    locks: list[Any] = []
    for key, kind, payload in meta["fields"]:
        if kind == "config":
            result[key] = backtesting.strategy.config
        elif kind == "locks":
            locks = [PairLock(**_decode_value(fields)) for fields in payload]
            result[key] = locks
        elif kind == "frame":
            frame = frames[int(payload)]
            if type(frame) is not pd.DataFrame:
                raise ValueError("malformed backtest cache entry frame")
            result[key] = frame
        elif kind == "value":
            result[key] = _decode_value(payload)
        else:
            raise ValueError(f"unknown field kind {kind!r}")
    engine = {name: _decode_value(value) for name, value in meta["engine"].items()}
    # As the original starts: a clean engine (trades, locks, custom data, counters, dp cache).
    backtesting.reset_backtest(backtesting.enable_protections)
    backtesting.wallets.update()
    for name, value in engine.items():
        setattr(backtesting, name, value)
    PairLocks.locks = locks
    if "locks" in result:
        result["locks"] = PairLocks.get_all_locks()
    return result


def _verify(backtesting: Any, entry: tuple, result: Mapping[str, Any]) -> None:
    """Raise `_Refused` unless `entry`'s tagged values decode back to exactly `result` and the
    engine's state. (That the entry itself comes back identical from disk is proven by
    ``cache.set``, whose `encode` decodes and compares it before anything is written.)"""
    from freqtrade_opt_plugin.equality import first_difference

    meta = entry[0]
    for key, kind, payload in meta["fields"]:
        if kind == "locks":
            left = [_lock_fields(lock) for lock in result[key]]
            right = [_decode_value(fields) for fields in payload]
        elif kind == "value":
            left, right = result[key], _decode_value(payload)
        else:  # the live config; frames are stored as they are
            continue
        if content_hash(left, fallback=_fallback) != content_hash(right, fallback=_fallback):
            difference = first_difference(right, left, f"result[{key!r}]") or "content differs"
            raise _Refused(f"the stored result would differ: {difference}")
    for name, value in meta["engine"].items():
        if content_hash(_decode_value(value)) != content_hash(getattr(backtesting, name)):
            raise _Refused(f"Backtesting.{name} would not be restored exactly")


# -- the entry point ---------------------------------------------------------------------------
def original_backtest() -> Callable[..., dict]:
    """Freqtrade's own ``Backtesting.backtest`` (below any installed router)."""
    import inspect

    from freqtrade.optimize.backtesting import Backtesting

    func = inspect.unwrap(Backtesting.backtest)
    if getattr(func, "__module__", "").startswith("freqtrade_opt_plugin"):
        raise RuntimeError("the original Backtesting.backtest is not reachable")
    return func


def cached_backtest(backtesting: Any, processed: dict[str, pd.DataFrame], start_date: Any,
                    end_date: Any, original: Callable[..., dict] | None = None) -> dict[str, Any]:
    """``backtesting.backtest(processed, start_date, end_date)``, reusing an identical run.

    `original` (default: Freqtrade's own) runs on a miss; its exceptions propagate unchanged,
    marked with `router.call_original`. A failure of the caching machinery itself never does:
    the backtest then runs normally (one warning per process).
    """
    from freqtrade_opt_plugin.router import call_original

    original = original or original_backtest()
    key, cache = None, None
    try:
        settings = get_settings()
        reason = backtest_cacheability(backtesting)  # cheap: checked first (hyperopt epochs)
        if reason is not None:
            raise Unhashable(reason)
        if settings.enabled and settings.backtests:
            cache = get_cache(CACHE_NAME)
            if cache.bypassed is None:
                key = backtest_cache_key(backtesting, processed, start_date, end_date)
    except Unhashable as exc:
        _debug_once(str(exc))
    except Exception as exc:  # noqa: BLE001 - the machinery must never break a backtest
        _internal_error(exc)
    if key is None or cache is None:
        return call_original(original, backtesting, processed, start_date, end_date)

    entry = cache.get(key)
    if entry is not MISSING:
        try:
            result = _restore(backtesting, entry)
        except Exception as exc:  # noqa: BLE001 - an unusable entry is a miss
            logger.warning("freqtrade-opt backtest cache: stored result unusable (%s); running "
                           "the backtest", exc)
            cache.delete(key)
        else:
            logger.info("freqtrade-opt: reused the stored result of an identical backtest of %s "
                        "(cache 'backtesting', key %s); set FREQTRADE_OPT_CACHE_BACKTESTS=false "
                        "to always run it", type(backtesting.strategy).__name__, key[:12])
            return result

    try:
        before = _engine_state(backtesting)
        loaded_before = _loaded_data(backtesting)
    except Exception as exc:  # noqa: BLE001
        _internal_error(exc)
        return call_original(original, backtesting, processed, start_date, end_date)
    result = call_original(original, backtesting, processed, start_date, end_date)
    try:
        if _loaded_data(backtesting) != loaded_before:
            raise _Refused("the trade loop loaded data the key does not cover")
        entry = _make_entry(backtesting, result, before)
        _verify(backtesting, entry, result)
        if cache.set(key, entry):
            logger.debug("freqtrade-opt backtest cache: stored the result (key %s)", key[:12])
    except _Refused as exc:
        cache.skip(str(exc))
        _debug_once(str(exc))
    except Exception as exc:  # noqa: BLE001 - storing is optional, the result is the result
        _internal_error(exc)
    return result
