"""Which row of which pair Freqtrade's generator processes at which candle step.

For a static pairlist (with or without timeframe-detail: main rows are taken on the first
detail index only), ``time_pair_generator`` advances each pair's
row index by one on every step whose time has reached the row's date (``validate_row``): row
``i`` is processed at step ``s_i = max(s_{i-1} + 1, g_i)``, ``g_i`` the first step with
``time >= date_i``. That is ``s_i = i + cummax(g_j - j)``, computed with numpy in integer
nanoseconds (pandas compares a Timestamp with a datetime at that precision). Nothing a trade
does changes it, so the whole schedule is known before the loop starts.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from freqtrade_opt_plugin.optimizations.column_rows import column, dates_ns, first_date


DATE_IDX, OPEN_IDX, LONG_IDX, SHORT_IDX = 0, 1, 5, 7


class DataNotSupported(ValueError):
    """The row lists cannot be scheduled exactly (e.g. dates that are not Timestamps)."""


@dataclass
class PairTimeline:
    """The schedule of one pair (``index`` is its position in ``list(data)``)."""

    name: str
    index: int
    base: str
    rows: Sequence[Any] = field(repr=False)
    opens: Sequence[Any] = field(repr=False)  # each row's open (the row's own object)
    row_at: array = field(repr=False)  # per step: the row processed there, or -1
    count: array = field(repr=False)  # per step: rows processed up to and including it
    first_step: int  # step of the first processed row (= number of steps when none)
    last_row: int  # last processed row, -1 when none
    aligned: bool  # every processed row's date equals its step's time
    signals: dict[int, str] = field(repr=False)  # step -> check_for_trade_entry's direction


@dataclass
class Timeline:
    """The schedule of a whole run: the step times and every pair's rows."""

    times: list[datetime] = field(repr=False)
    pairs: list[PairTimeline]
    last_any: array = field(repr=False)  # per step: last step <= it where any pair had a row
    signal_at: dict[int, list[int]] = field(repr=False)  # step -> pair indices, ascending
    first_order: list[int]  # pairs with a processed row, by (first step, index)

    @property
    def steps(self) -> int:
        return len(self.times)


def step_times(time_generator: Callable[[datetime, datetime], Any], start: datetime,
               end: datetime) -> list[datetime]:
    """The generator's own step times (``Backtesting._time_generator``)."""
    return list(time_generator(start, end))


def _times_ns(times: list[datetime], timeframe: timedelta) -> np.ndarray:
    import pandas as pd

    if not times:
        return np.zeros(0, dtype=np.int64)
    if times[0].tzinfo is None:
        raise DataNotSupported("the backtest start date has no time zone")
    step_ns = (timeframe // timedelta(microseconds=1)) * 1000
    first = pd.Timestamp(times[0]).value
    return first + np.arange(len(times), dtype=np.int64) * step_ns


def _dates_ns(rows: Sequence[Any]) -> np.ndarray:
    import pandas as pd

    if not rows:
        return np.zeros(0, dtype=np.int64)
    first = first_date(rows)
    if type(first) is not pd.Timestamp or first.tz is None:
        raise DataNotSupported(f"row dates are {type(first).__name__} without time zone "
                               "(expected tz-aware pandas Timestamps)")
    try:
        return dates_ns(rows)
    except (AttributeError, TypeError, OverflowError, ValueError) as exc:
        raise DataNotSupported(f"a row date is not a Timestamp: {exc}") from None


def schedule(dates_ns: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
    """Step at which each row is processed (``>= len(times_ns)``: never)."""
    n = len(dates_ns)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    reached = np.searchsorted(times_ns, dates_ns, side="left").astype(np.int64)
    offset = np.arange(n, dtype=np.int64)
    return offset + np.maximum.accumulate(reached - offset)


def _entry_candidates(rows: Sequence[Any], can_short: bool) -> list[int]:
    """Rows where ``check_for_trade_entry`` can return a direction (it needs an entry == 1)."""
    longs = column(rows, LONG_IDX)
    if can_short:
        shorts = column(rows, SHORT_IDX)
        return [i for i, (a, b) in enumerate(zip(longs, shorts, strict=True)) if a == 1 or b == 1]
    return [i for i, a in enumerate(longs) if a == 1]


def build_timeline(
    data: dict[str, list], times: list[datetime], timeframe: timedelta,
    check_for_trade_entry: Callable[[Any], str | None], can_short: bool,
) -> Timeline:
    """Schedule every pair of `data` (``Backtesting._get_ohlcv_as_lists``) over `times`."""
    steps = len(times)
    times_ns = _times_ns(times, timeframe)
    pairs: list[PairTimeline] = []
    any_row = np.zeros(steps, dtype=bool)
    signal_at: dict[int, list[int]] = {}
    for index, (name, rows) in enumerate(data.items()):
        dates = _dates_ns(rows)
        at = schedule(dates, times_ns)
        done = at < steps
        processed = int(np.count_nonzero(done))  # `at` is increasing: a prefix
        row_at = np.full(steps, -1, dtype=np.int32)
        row_at[at[:processed]] = np.arange(processed, dtype=np.int32)
        count = np.cumsum(row_at >= 0, dtype=np.int32)
        any_row[at[:processed]] = True
        aligned = bool(np.array_equal(dates[:processed], times_ns[at[:processed]]))
        signals: dict[int, str] = {}
        for i in _entry_candidates(rows, can_short):
            if i < processed and (direction := check_for_trade_entry(rows[i])) is not None:
                step = int(at[i])
                signals[step] = direction
                signal_at.setdefault(step, []).append(index)
        pairs.append(PairTimeline(
            name=name, index=index, base=name.split("/")[0], rows=rows,
            opens=column(rows, OPEN_IDX),
            row_at=array("i", row_at.tobytes()), count=array("i", count.tobytes()),
            first_step=int(at[0]) if processed else steps, last_row=processed - 1,
            aligned=aligned, signals=signals,
        ))
    last_any = np.where(any_row, np.arange(steps), -1)
    last_any = np.maximum.accumulate(last_any) if steps else last_any
    first_order = sorted((p.index for p in pairs if p.first_step < steps),
                         key=lambda j: (pairs[j].first_step, j))
    return Timeline(
        times=times, pairs=pairs, last_any=array("i", last_any.astype(np.int32).tobytes()),
        signal_at=signal_at, first_order=first_order,
    )
