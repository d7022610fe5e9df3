"""A backtest result as a stored entry, and restoring it exactly: plain values with dates as
tagged JSON, frames as they are, the engine's counters, locks, trades and wallets."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from freqtrade_opt_plugin.cache.hashing import content_hash


#: Reset at the start of ``backtest()`` and counted up by it: always stored with a result.
_COUNTERS = frozenset({
    "rejected_trades", "timedout_entry_orders", "timedout_exit_orders", "canceled_trade_entries",
    "canceled_entry_orders", "replaced_entry_orders", "canceled_exit_orders",
    "replaced_exit_orders", "trade_id_counter", "order_id_counter",
})
#: Changed by ``backtest()`` and not restored from the entry: the wallet captures (see the module
#: docstring) and the protections, which a hit rebuilds the same way (``reset_backtest``).
_NOT_RESTORED = frozenset({"wallet_captures", "protections"})
#: The DataProvider's candle positions the trade loop leaves (name-mangled private attributes).
_DP_SLICE_INDEX = "_DataProvider__slice_index"
_DP_SLICE_DATE = "_DataProvider__slice_date"
#: Not watched for changes (besides `_NOT_RESTORED`): display, and outputs of earlier calls that
#: ``backtest()`` ignores.
_NOT_WATCHED = frozenset({"progress", "_progress_task_overall", "_progress_task", "results",
                          "all_bt_content", "analysis_results"})
_LOCK_FIELDS = ("id", "pair", "side", "reason", "lock_time", "lock_end_time", "active")


def _fallback(value: Any) -> Any:
    """Content of the non-plain types found in config and engine state."""
    from freqtrade.configuration.timerange import TimeRange

    from freqtrade_opt_plugin.optimizations.reuse.state import _fallback as strategy_fallback

    if isinstance(value, TimeRange):
        return dict(vars(value))
    return strategy_fallback(value)



class _Refused(Exception):
    """This backtest's result is not stored or reused (the message says why)."""


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
    from freqtrade_opt_plugin.optimizations.reuse.state import _identity_hash

    return {name: _identity_hash(value) for name, value in vars(backtesting).items()
            if name not in _NOT_WATCHED and name not in _NOT_RESTORED}


def _make_entry(backtesting: Any, result: Mapping[str, Any], before: dict[str, str]) -> tuple:
    """(meta, *frames) for `result`; raises `_Refused` when it could not be restored exactly."""
    from freqtrade.persistence import LocalTrade, PairLocks

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
    if LocalTrade.bt_trades_open:
        raise _Refused("trades were left open, which a stored result would not restore")
    dp = backtesting.dataprovider
    slice_index = dict(getattr(dp, _DP_SLICE_INDEX))
    if not all(type(k) is str and type(v) is int for k, v in slice_index.items()):
        raise _Refused("the DataProvider's candle positions are not plain")
    meta = {"fields": fields, "engine": engine, "total_profit": LocalTrade.bt_total_profit,
            "progress": _progress_steps(backtesting),
            "dp_slice": [_encode_value(slice_index), _encode_value(getattr(dp, _DP_SLICE_DATE))]}
    return (meta, *frames)


def _progress_steps(backtesting: Any) -> int:
    """The total of the progress bar's last phase (the trade loop's candles)."""
    progress = getattr(backtesting, "progress", None)
    if progress is None:
        return 0
    task = next((t for t in progress.tasks if t.id == backtesting._progress_task), None)
    return int(task.total or 0) if task is not None else 0


def _complete_progress(backtesting: Any, steps: int) -> None:
    """The progress bar as the trade loop leaves it: its last phase, completed."""
    from freqtrade.enums import BacktestState

    backtesting._set_progress_step(BacktestState.BACKTEST, steps)
    backtesting._increment_progress(steps)


def _restore(backtesting: Any, processed: dict[str, pd.DataFrame], entry: Any) -> dict[str, Any]:
    """The result dict of a stored entry, with the engine left as the original leaves it.

    Like the original, it first converts `processed` (``_get_ohlcv_as_lists``: entry and exit
    signals, the DataProvider's analysed frames, `processed` trimmed in place, the progress bar);
    only the trade loop is skipped. Its outcome is restored: counters, locks, the wallets' closed
    profit, and the progress bar's last phase, completed. The wallet captures are not rebuilt
    (their summary is part of the result)."""
    from freqtrade.persistence import LocalTrade, PairLocks
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
    total_profit = float(meta["total_profit"])
    slice_index, slice_date = (_decode_value(value) for value in meta["dp_slice"])
    if type(slice_index) is not dict:
        raise ValueError("malformed DataProvider positions")
    steps = int(meta["progress"])
    # As the original starts: a clean engine (trades, locks, custom data, counters, dp cache).
    backtesting.reset_backtest(backtesting.enable_protections)
    backtesting.wallets.update()
    backtesting._get_ohlcv_as_lists(processed)
    _complete_progress(backtesting, steps)
    for name, value in engine.items():
        setattr(backtesting, name, value)
    PairLocks.locks = locks
    LocalTrade.bt_total_profit = total_profit
    # where the loop left the DataProvider: get_analyzed_dataframe() slices up to it
    setattr(backtesting.dataprovider, _DP_SLICE_INDEX, slice_index)
    setattr(backtesting.dataprovider, _DP_SLICE_DATE, slice_date)
    backtesting.wallets.update()
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


