"""Vectorized `analyze_trade_parallelism`: open trades per candle without expanding each trade.

The original builds ``pd.date_range(open_date, close_date, freq, inclusive="left")`` per trade in a
Python loop, repeats the whole trades frame once per candle and resamples the result. Its output
depends only on, per trade, the candle dates that range yields and whether ``pair`` is non-null:

* fixed frequencies (every timeframe below ``1w``): the range is ``open + k * freq`` for
  ``0 <= k < ceil((close - open) / freq)``, starting AT ``open_date`` even when it is off the candle
  grid. Consecutive dates fall into consecutive resample bins, so a trade adds 1 to the bins
  ``b0 .. b0 + n - 1``: a difference array and a cumulative sum count all trades at once.
* anchored frequencies (``1W-MON``, ``MS``, ``YS``): the range starts at ``open_date`` rolled
  forward onto the anchor (keeping its time of day) and steps by the offset. Such trades have few
  candles, so they are expanded with numpy and resampled by pandas exactly as the original does.

Every other input (empty frame, NaT dates, non-datetime columns, mixed time zones, duplicate or
missing columns, offsets not listed above) is delegated to ``wrapped`` (what runs without this
optimization: Freqtrade's original).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from freqtrade_opt_plugin.optimizations.verified import VERIFIED
from freqtrade_opt_plugin.registry import (
    BenchCase,
    Optimization,
    OptimizationLevel,
    VerifyCase,
)


_TARGET_MODULE = "freqtrade.data.btanalysis.trade_parallelism"
_TARGET = f"{_TARGET_MODULE}:analyze_trade_parallelism"
_UNIT_ORDER = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


Parallelism = Callable[[pd.DataFrame, str], pd.DataFrame]


def factory(wrapped: Parallelism) -> Parallelism:
    """The replacement in front of `wrapped` (which gets the inputs outside the fast model)."""

    def analyze_trade_parallelism(trades: pd.DataFrame, timeframe: str) -> pd.DataFrame:
        """
        Count the trades open in each candle of `timeframe` (same result as Freqtrade's original).
        :param trades: Trades Dataframe - can be loaded from backtest, or created
            via trade_list_to_dataframe
        :param timeframe: Timeframe used for backtest
        :return: dataframe with open-counts per time-period in timeframe
        """
        result = _parallelism(trades, timeframe)
        return wrapped(trades, timeframe) if result is None else result

    return analyze_trade_parallelism


def _parallelism(trades: pd.DataFrame, timeframe: str) -> pd.DataFrame | None:
    """The fast path's result, or None for inputs outside its model."""
    from freqtrade.exchange import timeframe_to_resample_freq

    timeframe_freq = timeframe_to_resample_freq(timeframe)
    prepared = _prepare(trades, timeframe_freq)
    if prepared is None:
        return None
    offset, unit, opens, closes, weights, wall_clock_ok = prepared

    if isinstance(offset, pd.offsets.Tick):
        return _count_fixed(offset, timeframe_freq, unit, opens, closes, weights)
    if wall_clock_ok:
        return _count_anchored(offset, timeframe_freq, unit, opens, closes, weights)
    return None


def _prepare(
    trades: pd.DataFrame, timeframe_freq: str
) -> tuple[pd.DateOffset, str, np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """Checked inputs: (offset, unit, open i8, close i8, weights, naive or UTC), or None."""
    if not isinstance(trades, pd.DataFrame) or len(trades) == 0:
        return None  # the original raises "No objects to concatenate" for an empty frame
    columns = trades.columns
    if (
        not columns.is_unique
        or "date" in columns
        or any(name not in columns for name in ("pair", "open_date", "close_date"))
    ):
        return None
    open_s, close_s = trades["open_date"], trades["close_date"]
    if not (_is_datetime(open_s.dtype) and _is_datetime(close_s.dtype)):
        return None
    tz_open, tz_close = getattr(open_s.dtype, "tz", None), getattr(close_s.dtype, "tz", None)
    if type(tz_open) is not type(tz_close) or str(tz_open) != str(tz_close):
        return None
    try:
        offset = pd.tseries.frequencies.to_offset(timeframe_freq)
    except ValueError:
        return None
    if tz_open is not None and not _values_drop_tz():
        return None  # the original's index would be tz-aware: not what is implemented here
    units = (open_s.dt.unit, close_s.dt.unit)
    if any(u not in _UNIT_ORDER for u in units):
        return None
    # pd.date_range(start, end) yields the finer of both units.
    unit = max(units, key=_UNIT_ORDER.__getitem__)
    opens = open_s.dt.as_unit(unit).array.asi8  # epoch values (UTC for tz-aware data)
    closes = close_s.dt.as_unit(unit).array.asi8
    nat = np.iinfo(np.int64).min
    if (opens == nat).any() or (closes == nat).any():
        return None  # the original raises "Neither `start` nor `end` can be NaT"
    # The original counts non-null `pair` values of the expanded rows.
    weights = trades["pair"].notna().to_numpy(dtype=np.int64)
    # Anchored offsets are applied to wall-clock time: identical to epoch time only for naive/UTC.
    wall_clock_ok = tz_open is None or str(tz_open) in ("UTC", "utc", "UTC+00:00")
    return offset, unit, opens, closes, weights, wall_clock_ok


@functools.cache
def _values_drop_tz() -> bool:
    """Whether `Series.values` of tz-aware dates is naive UTC (pandas 3.x, deprecated for 4.0).

    The original builds its index from that array, so its index is tz-naive UTC.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = pd.Series(pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")).values
    return isinstance(values, np.ndarray) and values.dtype.kind == "M"


def _is_datetime(dtype) -> bool:
    """numpy datetime64 or pandas' tz-aware datetime (not pyarrow timestamps)."""
    if isinstance(dtype, pd.DatetimeTZDtype):
        return True
    return isinstance(dtype, np.dtype) and dtype.kind == "M"


def _resample_frame(dates: np.ndarray, weights: np.ndarray, unit: str, freq: str) -> pd.DataFrame:
    """The original's final step on already expanded candle dates (null pair = NaN weight)."""
    index = pd.DatetimeIndex(dates.view(f"datetime64[{unit}]"), name="date")
    pair = np.where(weights > 0, 1.0, np.nan)
    frame = pd.DataFrame({"pair": pair}, index=index)
    result = frame.resample(freq)[["pair"]].count()
    return result.rename({"pair": "open_trades"}, axis=1)


def _count_fixed(
    offset: pd.offsets.Tick,
    freq: str,
    unit: str,
    opens: np.ndarray,
    closes: np.ndarray,
    weights: np.ndarray,
) -> pd.DataFrame | None:
    """Fixed-duration candles: difference array over the resample bins."""
    step = pd.Timedelta(offset).as_unit(unit)._value
    if step <= 0:
        return None
    span = closes - opens
    # Candles of date_range(open, close, inclusive="left"): ceil(span / step), none if span <= 0.
    counts = np.where(span > 0, -((-span) // step), 0)
    active = counts > 0
    if not active.any():
        return _resample_frame(np.empty(0, dtype=np.int64), weights[:0], unit, freq)
    opens, counts, weights = opens[active], counts[active], weights[active]
    first = int(opens.min())
    last = int((opens + (counts - 1) * step).max())
    # Let pandas place the bins (origin, label, freq) from the first and last candle dates.
    result = _resample_frame(np.array([first, last], dtype=np.int64), np.ones(2), unit, freq)
    origin = int(result.index.asi8[0])
    n_bins = len(result)
    if (last - origin) // step + 1 != n_bins or (first - origin) // step != 0:
        return None
    start_bin = (opens - origin) // step
    diff = np.zeros(n_bins + 1, dtype=np.int64)
    np.add.at(diff, start_bin, weights)
    np.add.at(diff, start_bin + counts, -weights)
    result["open_trades"] = np.cumsum(diff[:-1])
    return result


def _count_anchored(
    offset: pd.DateOffset,
    freq: str,
    unit: str,
    opens: np.ndarray,
    closes: np.ndarray,
    weights: np.ndarray,
) -> pd.DataFrame | None:
    """Weekly / monthly / yearly candles: expand with numpy, resample with pandas."""
    if offset.normalize or offset.n < 1:
        return None
    per_day = 86_400 * _PER_SECOND[unit]
    if type(offset) is pd.offsets.Week and offset.weekday is not None:
        # A date is on the offset when its weekday matches; rolling forward keeps the time.
        weekday = (opens // per_day + 3) % 7  # 1970-01-01 was a Thursday (3)
        starts = opens + ((offset.weekday - weekday) % 7) * per_day
        step = 7 * per_day * offset.n
        counts = np.where(closes > starts, -((starts - closes) // step), 0)
        ks = _ranks(counts)
        dates = np.repeat(starts, counts) + ks * step
    elif type(offset) in (pd.offsets.MonthBegin, pd.offsets.YearBegin):
        if type(offset) is pd.offsets.YearBegin and offset.month != 1:
            return None
        step = offset.n * (12 if type(offset) is pd.offsets.YearBegin else 1)
        period = 12 if type(offset) is pd.offsets.YearBegin else 1
        open_days = opens // per_day
        time_of_day = opens - open_days * per_day
        open_month = _months(open_days)
        on_offset = (open_days == _first_day(open_month)) & (open_month % period == 0)
        start_month = np.where(on_offset, open_month, (open_month // period + 1) * period)
        close_month = _months(closes // per_day)
        counts = np.where(close_month >= start_month, (close_month - start_month) // step + 1, 0)
        last = _first_day(start_month + (counts - 1) * step) * per_day + time_of_day
        counts = counts - ((counts > 0) & (last >= closes))
        ks = _ranks(counts)
        months = np.repeat(start_month, counts) + ks * step
        dates = _first_day(months) * per_day + np.repeat(time_of_day, counts)
    else:
        return None
    return _resample_frame(dates, np.repeat(weights, counts), unit, freq)


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each trade's n candles, concatenated in trade order."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _months(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of day numbers since 1970-01-01."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _first_day(months: np.ndarray) -> np.ndarray:
    """Day number (since 1970-01-01) of the first day of months since 1970-01."""
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def verify_trade_parallelism(subject: Any, inputs: Any) -> Iterator[Any]:
    """``freqtrade-opt verify``: on the trades of all pairs, then of each pair."""
    if (problem := inputs.trades_problem()) is not None:
        yield subject.skip(problem)
        return
    timeframe = inputs.trades_timeframe or inputs.timeframe
    for pair, trades in inputs.trade_scopes():
        compared = subject.compare(trades, timeframe=timeframe, label="trades after the call")
        yield subject.check(pair, f"timeframe={timeframe}", compared.status)


def _bench_setup() -> tuple[tuple, dict]:
    from freqtrade_opt_plugin.offline.datagen import synthetic_trades

    return (synthetic_trades(2000), "5m"), {}


OPTIMIZATION = Optimization(
    name="trade_parallelism",
    target=_TARGET,
    factory=factory,
    tier=OptimizationLevel.CONSERVATIVE,
    fingerprints=VERIFIED[_TARGET],
    description=(
        "Counts open trades per candle with a difference array instead of expanding every trade "
        "with pd.date_range and resampling the repeated trades frame."
    ),
    default_percentage=100,
    performance_threshold=0.1,
    mutates_arguments=False,
    verify_case=VerifyCase(verify_trade_parallelism, planned=lambda inputs: 1 + len(inputs.pairs)),
    bench_case=BenchCase(_bench_setup, description="2000 trades, 5m"),
)
