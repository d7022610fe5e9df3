"""Timeframe-detail steps of the fast trade loop: what ``time_pair_generator`` does after a
main candle's first step (``is_first``) when ``timeframe_detail`` is set.

Freqtrade, on every main candle ``T`` (2026.9, fingerprinted in `guard`):

* at detail index 0 (``T`` itself) visits every pair with a main row, as without detail; a pair
  with an entry signal or an open trade (at its visit) whose detail data has rows in
  ``[row date, row date + timeframe)`` gets them from ``get_detail_data`` (cached for this
  candle, with the main row's signals) and is passed its detail row 0 instead of the main row;
* at every later detail index ``k`` (time ``T + k * detail``, up to and including
  ``T + timeframe``) visits, in the order ``dict.fromkeys(open trades' pairs + pairs)`` taken
  at the start of that index, only the pairs of that cache with a ``k``-th row (others
  ``continue`` before touching any state). For each: the cached entry direction, cleared by
  ``strategy.ignore_expired_candle``; the slice date set to the detail time; skipped when the
  pair was in ``pairs_with_open_trades`` and its trades are all closed now (appended there when
  it has open trades and was not); then ``backtest_loop`` with ``can_enter`` false on the
  backtest's end date only;
* nothing of the per-candle bookkeeping (wallet captures, slice indexes, progress) happens on
  detail indexes.

So index 0 is the driver's main-candle step (`driver._Loop._step`, which calls `first` for each
pair it hands to ``backtest_loop``; pairs it skips would not have been spread) and the later
indexes are reproduced here, calling Freqtrade's own ``_time_generator_det``,
``ignore_expired_candle`` and ``backtest_loop``.

The spread itself (``get_detail_data``: two ``searchsorted`` on the date column, then
``iloc[start:end, :CLOSE_IDX + 1].values.tolist()`` plus the main row's six signal values) costs
more than the ``backtest_loop`` calls of a candle; `DetailFrame` gives the same lists from the
frame's own arrays (`DetailFrame.rows`), and hands every frame or row it cannot prove identical
to Freqtrade's function.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np


class DetailFrame:
    """One pair's detail DataFrame read through its arrays, for ``get_detail_data``'s rows.

    ``.values`` of a frame whose first five columns are a tz-aware ``date`` and four float64
    columns is an object array built column by column (``DatetimeArray.astype(object)``:
    Timestamps of the column's unit and zone; ``float64`` to object: Python floats), which is
    what `rows` builds for the same slice; ``Series.searchsorted`` with a tz-aware Timestamp
    compares the column's int64 values with the Timestamp in the column's unit (the same binary
    search as numpy's on those integers) when it is exactly representable there.
    """

    def __init__(self, frame: Any, tf_ns: int) -> None:
        dates = frame["date"].array
        self.dates = dates
        self.i8 = dates._ndarray.view("i8")
        self.unit_ns = int(np.timedelta64(1, dates.unit) // np.timedelta64(1, "ns"))
        self.floats = [frame.iloc[:, k].to_numpy() for k in range(1, 5)]
        self.tf_ns = tf_ns

    @classmethod
    def build(cls, frame: Any, tf_ns: int) -> DetailFrame | None:
        """The reader of `frame`, or None when its layout is not the proven one."""
        import pandas as pd

        try:
            columns = list(frame.columns[:5])
            dtypes = list(frame.dtypes.iloc[:5])
        except (AttributeError, TypeError):
            return None
        if (len(columns) != 5 or columns[0] != "date" or list(frame.columns).count("date") != 1
                or not isinstance(dtypes[0], pd.DatetimeTZDtype)
                or any(d != np.dtype("float64") for d in dtypes[1:])
                or frame["date"].isna().any() or not frame["date"].is_monotonic_increasing):
            return None
        return cls(frame, tf_ns)

    def rows(self, row: Any, signals: list) -> list[list] | None | bool:
        """``get_detail_data(pair, row)`` (`signals`: the main row's six signal values); False
        when this main row's date is not provably searched the same way."""
        import pandas as pd

        date = row[0]
        if type(date) is not pd.Timestamp or date.tz is None or date.tz != self.dates.tz:
            return False
        start_ns = date.value
        end_ns = start_ns + self.tf_ns
        unit = self.unit_ns
        if start_ns % unit or end_ns % unit:
            return False
        i8 = self.i8
        start = int(i8.searchsorted(start_ns // unit, side="left"))
        end = int(i8.searchsorted(end_ns // unit, side="left"))
        if end <= start:
            return None
        opens, highs, lows, closes = (a[start:end].tolist() for a in self.floats)
        return [[d, o, h, lo, c, *signals] for d, o, h, lo, c in zip(
            self.dates[start:end].astype(object), opens, highs, lows, closes, strict=True)]


class DetailSteps:
    """The detail cache of the current main candle and its later detail indexes."""

    def __init__(self, bt: Any, loop: Any) -> None:
        self.bt = bt
        self.loop = loop  # the driver's _Loop (for its backtest_loop call)
        self.has_detail = bt.detail_data  # pair -> DataFrame (Freqtrade's dict, read live)
        self.rank = {name: pos for pos, name in enumerate(loop.names)}
        self.spread: dict[str, list] = {}  # pair -> detail rows of this main candle
        self.direction: dict[str, str | None] = {}  # pair -> the main candle's entry direction
        self.frames: dict[str, DetailFrame | None] = {}  # pair -> its reader (None: Freqtrade's)
        import freqtrade.optimize.backtesting as ft

        self.tf_ns = (bt.timeframe_td // timedelta(microseconds=1)) * 1000  # exact
        # the spread's layout as get_detail_data (fingerprinted) reads these constants
        self.signal_idx = (ft.LONG_IDX, ft.ELONG_IDX, ft.SHORT_IDX, ft.ESHORT_IDX,
                           ft.ENTER_TAG_IDX, ft.EXIT_TAG_IDX)
        self.readable = (ft.DATE_IDX, ft.CLOSE_IDX) == (0, 4)

    def _detail_rows(self, pair: str, row: Any) -> list[list] | None:
        """``get_detail_data(pair, row)``: through the pair's `DetailFrame` where proven."""
        if pair not in self.frames:
            frame = self.has_detail[pair]
            self.frames[pair] = DetailFrame.build(frame, self.tf_ns) if self.readable else None
        reader = self.frames[pair]
        if reader is not None:
            rows = reader.rows(row, [row[i] for i in self.signal_idx])
            if rows is not False:
                return rows
        return self.bt.get_detail_data(pair, row)

    def first(self, pair: str, row: Any, trade_dir: str | None) -> Any:
        """Detail index 0 of a pair handed to ``backtest_loop`` (it has an entry signal or an
        open trade): spread the main row as the generator does; the row to pass."""
        if pair not in self.spread and pair in self.has_detail:
            rows = self._detail_rows(pair, row)
            if rows is not None:
                self.spread[pair] = rows
                self.direction[pair] = trade_dir
                return rows[0]
        return row

    def run(self, step: int, now: datetime, opens: list[str]) -> datetime | None:
        """Detail indexes 1.. of main candle `now` (every pair has processed its main row).
        Returns the last detail time set as slice date (None: none)."""
        bt = self.bt
        spread, direction = self.spread, self.direction
        trade_cls = self.loop.local_trade
        open_pp = trade_cls.bt_trades_open_pp
        set_date = bt.dataprovider._set_dataframe_max_date
        ignore_expired = bt.strategy.ignore_expired_candle
        latest = now - bt.timeframe_td
        timeframe_secs = bt.timeframe_secs
        end_date = self.loop.end_date
        call_loop = self.loop.call_loop
        with_open = list(opens)  # the generator's pairs_with_open_trades
        longest = max(len(rows) for rows in spread.values())
        # the spread pairs in pair-list order (dict.fromkeys keeps the first occurrence)
        listed = sorted(spread, key=self.rank.__getitem__)
        last_date = None
        try:
            for now_det, _first, _has, idx in bt._time_generator_det(now, now + bt.timeframe_td):
                if idx == 0:
                    continue
                if idx >= longest:
                    break
                open_first = [t.pair for t in trade_cls.bt_trades_open if t.pair in spread]
                for pair in dict.fromkeys(open_first + listed):
                    rows = spread[pair]
                    if len(rows) <= idx:
                        continue
                    row = rows[idx]
                    trade_dir = direction[pair]
                    if ignore_expired(latest, now_det, timeframe_secs, trade_dir is not None):
                        trade_dir = None
                    set_date(now_det)
                    last_date = now_det
                    has_open = len(open_pp[pair]) > 0
                    if pair in with_open and not has_open:
                        continue
                    if has_open and pair not in with_open:
                        with_open.append(pair)
                    call_loop(row, pair, now_det, trade_dir, not (now_det == end_date))
        finally:
            spread.clear()
            direction.clear()
        return last_date
