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
``get_detail_data``, ``ignore_expired_candle`` and ``backtest_loop``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class DetailSteps:
    """The detail cache of the current main candle and its later detail indexes."""

    def __init__(self, bt: Any, loop: Any) -> None:
        self.bt = bt
        self.loop = loop  # the driver's _Loop (for its backtest_loop call)
        self.has_detail = bt.detail_data  # pair -> DataFrame (Freqtrade's dict, read live)
        self.rank = {name: pos for pos, name in enumerate(loop.names)}
        self.spread: dict[str, list] = {}  # pair -> detail rows of this main candle
        self.direction: dict[str, str | None] = {}  # pair -> the main candle's entry direction

    def first(self, pair: str, row: Any, trade_dir: str | None) -> Any:
        """Detail index 0 of a pair handed to ``backtest_loop`` (it has an entry signal or an
        open trade): spread the main row as the generator does; the row to pass."""
        if pair not in self.spread and pair in self.has_detail:
            rows = self.bt.get_detail_data(pair, row)
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
