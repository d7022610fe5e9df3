"""The fast trade loop: ``Backtesting.backtest`` visiting only the pair-candles where something
can happen.

Freqtrade's ``time_pair_generator`` visits every pair on every candle; on a pair-candle without
an open trade and without an entry signal ``backtest_loop`` does nothing, and only the
generator's bookkeeping remains. The driver walks the candles itself and calls Freqtrade's own
``backtest_loop`` (twice for a reversing short, as ``backtest`` does) for the active
pair-candles only, in the generator's pair order (pairs with open trades first). What the
skipped pair-candles would have left behind is reproduced exactly:

* ``check_abort`` and ``bot_loop_start`` (when user-defined) on every candle, with Freqtrade's
  own functions; the progress steps, passed to Freqtrade's bar in batches that are flushed
  before any Freqtrade or user code runs in the loop (`_Loop._flush_progress`);
* the wallet captures: the stake currency's on every candle, a base currency's on the
  pair-candles whose base wallet is non-zero (``_capture_wallet``'s statement, `_Loop._capture`);
* the DataProvider's slice index per pair and slice date, and the key order of
  ``LocalTrade.bt_trades_open_pp`` (``handle_left_open`` iterates it), written before any user
  code can run: pairs before the active one in this candle's order already advanced, later
  ones not;
* with the exit scanner (`exit_scan.ExitScanner`), an open trade's quiet candles are skipped
  too: ``skip`` applies their effect (``max_rate``/``min_rate``), at once when no user callback
  can read it in between, otherwise candle by candle where Freqtrade would have.

With timeframe-detail, a candle's step is detail index 0: each pair handed to ``backtest_loop``
is spread into its detail rows there, and the candle's later detail indexes run right after it
(`detail.DetailSteps`).

The row schedule (`timeline`) is computed before the loop; data it cannot schedule exactly
runs Freqtrade's own generator loop (`stock_loop`) on the already converted rows.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from datetime import datetime
from typing import Any

from freqtrade_opt_plugin.optimizations import column_rows
from freqtrade_opt_plugin.optimizations.fast_loop import detail
from freqtrade_opt_plugin.optimizations.fast_loop.eligibility import Plan
from freqtrade_opt_plugin.optimizations.fast_loop.timeline import (
    DataNotSupported,
    Timeline,
    build_timeline,
    step_times,
)


logger = logging.getLogger(__name__)

_ALL = 1 << 30  # a stock-order position after every pair
_PROGRESS_BATCH = 256  # candle steps per progress-bar update at most


def _ft() -> Any:
    import freqtrade.optimize.backtesting as module

    return module


def run_backtest(bt: Any, processed: dict, start_date: datetime, end_date: datetime,
                 plan: Plan) -> dict[str, Any]:
    """``Backtesting.backtest`` for an eligible run: the same result and side effects.

    If it raises, the engine state that outlives ``reset_backtest`` (trade and order id
    counters, rejected signals, the DataProvider's slice date) is put back first, so the
    Router's fallback run starts exactly where Freqtrade's own run would have.
    """
    saved = (bt.trade_id_counter, bt.order_id_counter,
             {k: list(v) for k, v in getattr(bt, "rejected_dict", {}).items()},
             bt.dataprovider._DataProvider__slice_date)
    try:
        return _run(bt, processed, start_date, end_date, plan)
    except BaseException:
        bt.trade_id_counter, bt.order_id_counter, rejected, slice_date = saved
        if hasattr(bt, "rejected_dict"):
            bt.rejected_dict.clear()
            bt.rejected_dict.update(rejected)
        bt.dataprovider._set_dataframe_max_date(slice_date)
        raise


def _run(bt: Any, processed: dict, start_date: datetime, end_date: datetime,
         plan: Plan) -> dict[str, Any]:
    ft = _ft()
    bt.reset_backtest(bt.enable_protections)
    bt.wallets.update()
    with column_rows.wanted():  # rows as columns when ohlcv_lists converts them
        data: dict = bt._get_ohlcv_as_lists(processed)
    try:
        times = step_times(bt._time_generator, start_date, end_date)
        timeline = build_timeline(data, times, bt.timeframe_td, bt.check_for_trade_entry,
                                  bt._can_short)
    except DataNotSupported as exc:
        logger.info("freqtrade-opt fast_loop: %s; Freqtrade's generator runs this backtest", exc)
        stock_loop(bt, data, start_date, end_date)
    else:
        _Loop(bt, data, timeline, start_date, end_date, plan).run()
    return _finish(bt, ft, data)


def stock_loop(bt: Any, data: dict, start_date: datetime, end_date: datetime) -> None:
    """The loop of Freqtrade's ``backtest`` verbatim (after the data conversion)."""
    for current_time, pair, row, is_last_row, trade_dir in bt.time_pair_generator(
        start_date, end_date, list(data.keys()), data
    ):
        if not bt._can_short or trade_dir is None:
            bt.backtest_loop(row, pair, current_time, trade_dir, not is_last_row)
        else:
            for _ in (0, 1):
                a = bt.backtest_loop(row, pair, current_time, trade_dir, not is_last_row)
                if not a or a == trade_dir:
                    break


def _finish(bt: Any, ft: Any, data: dict) -> dict[str, Any]:
    """The end of Freqtrade's ``backtest``: left-open trades and the result dict."""
    bt.handle_left_open(ft.LocalTrade.bt_trades_open_pp, data=data)
    bt.wallets.update()

    results = ft.trade_list_to_dataframe(ft.LocalTrade.bt_trades)
    return {
        "results": results,
        "config": bt.strategy.config,
        "locks": ft.PairLocks.get_all_locks(),
        "rejected_signals": bt.rejected_trades,
        "timedout_entry_orders": bt.timedout_entry_orders,
        "timedout_exit_orders": bt.timedout_exit_orders,
        "canceled_trade_entries": bt.canceled_trade_entries,
        "canceled_entry_orders": bt.canceled_entry_orders,
        "replaced_entry_orders": bt.replaced_entry_orders,
        "final_balance": bt.wallets.get_total(bt.strategy.config["stake_currency"]),
        "wallet_summary": ft.convert_bt_wallet_collection(bt.wallet_captures),
    }


class _Loop:
    """One run of the candle loop (state of the walk; see the module docstring)."""

    def __init__(self, bt: Any, data: dict, timeline: Timeline, start_date: datetime,
                 end_date: datetime, plan: Plan) -> None:
        self.bt = bt
        self.data = data
        self.tl = timeline
        self.start_date = start_date
        self.end_date = end_date
        self.plan = plan
        self.names = [p.name for p in timeline.pairs]
        self.index = {p.name: p.index for p in timeline.pairs}
        self.capturing = bool(bt._is_backtest_runmode)
        self.startup = bt.required_startup
        self.scanner = plan.scanner
        # User code in the loop (callbacks, bot_loop_start) may read a trade's max/min rate and
        # may change the exit settings the scanner's proofs rest on: skip candle by candle and
        # re-check those settings before a quiet window is used.
        self.user_code = bool(plan.observed) or plan.bot_loop_start
        self.per_candle_skip = self.user_code
        self.settings_key = self._exit_settings() if self.user_code else None
        self.arrays: dict[int, Any] = {}  # pair index -> exit_scan.PairArrays (lazily)
        # pair index -> (trade, first loud row, the trade's state the proof read)
        self.quiet: dict[int, tuple[Any, int, tuple | None]] = {}
        # DataProvider sync state: the step and stock-order position synced up to.
        self.sync_step = -1
        self.sync_pos = -1
        self.order: list[str] | None = None  # this step's stock pair order (built lazily)
        self.order_pos: dict[str, int] = {}
        self.wallets_seen: Any = None
        self.totals: dict[str, float] = {}  # currency -> get_total, for `wallets_seen`
        self.nonzero: set[int] = set()
        self.local_trade = _ft().LocalTrade
        self.progress_due = 0  # progress steps not yet passed to Freqtrade's bar
        self.detail = detail.DetailSteps(bt, self) if bt.timeframe_detail_td else None
        self.last_date: dict[int, datetime] = {}  # step -> its last detail time, when later

    # -- wallets ------------------------------------------------------------------------------

    def _capture(self, now: datetime, currency: str, price: float) -> None:
        """``Backtesting._capture_wallet`` for a backtest run mode (fingerprinted), with the
        totals read once per wallet state (``Wallets`` replaces its dict of immutable
        ``Wallet`` tuples on every update; `_wallets_changed` notices)."""
        if total := self._total(currency):
            self.bt.wallet_captures.append((now, currency, price, total))

    def _refresh_nonzero(self) -> None:
        """Pairs whose base-currency wallet total is non-zero (their candles capture it)."""
        wallets = self.bt.wallets
        self.wallets_seen = wallets._wallets
        self.totals = {}
        if not self.capturing:
            return
        totals: dict[str, bool] = {}
        nonzero = set()
        for pair in self.tl.pairs:
            if pair.base not in totals:
                totals[pair.base] = bool(wallets.get_total(pair.base))
            if totals[pair.base]:
                nonzero.add(pair.index)
        self.nonzero = nonzero

    def _wallets_changed(self) -> bool:
        if self.bt.wallets._wallets is not self.wallets_seen:
            self._refresh_nonzero()
            return True
        return False

    # -- DataProvider and open-trade dict state -----------------------------------------------

    def _step_order(self, opens: list[str]) -> None:
        order = list(dict.fromkeys(opens + self.names))
        self.order = order
        self.order_pos = {name: pos for pos, name in enumerate(order)}

    def _sync(self, step: int, pos: int) -> None:
        """Slice indexes as the generator leaves them at `pos` of `step`'s pair order.

        Pairs at positions <= `pos` have processed this step's row, later ones not (`pos` -1:
        none yet; a huge `pos`: all). Keys of the slice dict and of ``bt_trades_open_pp`` are
        inserted in the generator's order: by first processed step, then pair index.
        """
        setter = self.bt.dataprovider._set_dataframe_max_index
        pairs = self.tl.pairs
        startup = self.startup
        if step != self.sync_step or pos >= _ALL:
            open_pp = _ft().LocalTrade.bt_trades_open_pp
            order_pos = self.order_pos
            for j in self.tl.first_order:
                pair = pairs[j]
                if pair.first_step > step:
                    break
                if order_pos.get(pair.name, -2) <= pos:
                    value = pair.count[step]
                else:
                    value = pair.count[step - 1] if step else 0
                if value:
                    setter(pair.name, startup + value)
                    open_pp[pair.name]  # noqa: B018 - the generator's defaultdict access
            self.sync_step, self.sync_pos = step, pos
        elif pos > self.sync_pos:
            order = self.order or []
            open_pp = _ft().LocalTrade.bt_trades_open_pp
            for name in order[self.sync_pos + 1:pos + 1]:
                pair = pairs[self.index[name]]
                if value := pair.count[step]:
                    setter(name, startup + value)
                    open_pp[name]  # noqa: B018
            self.sync_pos = pos

    def _sync_before_step(self, step: int) -> None:
        """State at the start of `step` (all pairs at the previous step): for bot_loop_start."""
        if step == 0:
            return
        self._sync(step - 1, _ALL)
        self._sync_date(step - 1)

    def _sync_end(self) -> None:
        steps = self.tl.steps
        if not steps:
            return
        self._sync(steps - 1, _ALL)
        self._sync_date(steps - 1)

    def _sync_date(self, step: int) -> None:
        """The slice date the generator leaves after `step`: the time of the last step with a
        row (its last visited detail time with timeframe-detail)."""
        last = self.tl.last_any[step]
        if last >= 0:
            self.bt.dataprovider._set_dataframe_max_date(
                self.last_date.get(last, self.tl.times[last]))

    # -- the walk -----------------------------------------------------------------------------

    def run(self) -> None:
        bt = self.bt
        ft = _ft()
        tl = self.tl
        times = tl.times
        local_trade = ft.LocalTrade
        check_abort = bt.check_abort
        stake = bt.strategy.config["stake_currency"]
        signal_at = tl.signal_at
        bot_loop_start = self.plan.bot_loop_start
        bt._set_progress_step(
            ft.BacktestState.BACKTEST, int((self.end_date - self.start_date) / bt.timeframe_td))
        self._refresh_nonzero()
        capturing = self.capturing
        # Without user code in the loop, a stretch of candles on which every open trade is in a
        # quiet window and no pair has an entry signal changes nothing but the wallet
        # captures: jump it (`_capture_quiet` writes its captures).
        jumps = not bot_loop_start and not self.per_candle_skip
        signal_steps = sorted(signal_at) if jumps else []
        steps = tl.steps
        step = 0
        try:
            while step < steps:
                now = times[step]
                check_abort()
                if bot_loop_start:
                    self._flush_progress()
                    self._sync_before_step(step)
                    ft.strategy_safe_wrapper(bt.strategy.bot_loop_start, supress_error=True)(
                        current_time=now)
                    self._wallets_changed()
                opens = [t.pair for t in local_trade.bt_trades_open]
                if capturing:
                    self._capture(now, stake, 1)
                signals = signal_at.get(step)
                # (nothing can happen before this step, the open trades' pairs, all quiet)
                idle: tuple[int, list] | None = (steps, [])
                if opens or signals or self.nonzero:
                    idle = self._step(step, now, opens, signals)
                step += 1
                self.progress_due += 1
                if jumps and idle is not None and idle[0] > step:
                    k = bisect_left(signal_steps, step)
                    target = min(idle[0], signal_steps[k] if k < len(signal_steps) else steps)
                    if target > step:
                        if capturing:
                            self._capture_quiet(step, target, stake, idle[1])
                        self.progress_due += target - step
                        step = target
                if self.progress_due >= _PROGRESS_BATCH:
                    self._flush_progress()
        finally:
            self._flush_progress()
        self._sync_end()

    def _capture_quiet(self, start: int, stop: int, stake: str, quiet_pairs: list) -> None:
        """The wallet captures of the jumped steps ``start .. stop-1``, as `_step` would write
        them: the stake currency's, then each of `quiet_pairs`' base currency (the open trades'
        pairs, in the step's order) on the steps where the pair has a row. No wallet changes in
        between."""
        append = self.bt.wallet_captures.append
        times = self.tl.times
        stake_total = self._total(stake)
        quiet = [(p.base, p.row_at, p.opens, total) for p in quiet_pairs
                 if (total := self._total(p.base))]
        for step in range(start, stop):
            now = times[step]
            if stake_total:
                append((now, stake, 1, stake_total))
            for base, row_at, opens, total in quiet:
                if (i := row_at[step]) >= 0:
                    append((now, base, opens[i], total))

    def _total(self, currency: str) -> float:
        total = self.totals.get(currency)
        if total is None:
            total = self.totals[currency] = self.bt.wallets.get_total(currency)
        return total

    def _flush_progress(self) -> None:
        """Advance Freqtrade's progress bar by the steps walked since the last flush: one
        ``_increment_progress(n)`` instead of n calls of 1 (the same integer count). Flushed
        before any Freqtrade or user code runs in the loop, so whatever can read the bar sees
        the count the generator would have left, and every `_PROGRESS_BATCH` steps."""
        if self.progress_due:
            due, self.progress_due = self.progress_due, 0
            self.bt._increment_progress(due)

    def _step(self, step: int, now: datetime, opens: list[str], signals: list[int] | None
              ) -> tuple[int, list] | None:
        """One candle's pair-candles. Returns, when every open trade took the quiet fast path
        and no other pair was visited, the first step at which one of their windows ends and
        their pairs (None otherwise)."""
        self.order = None
        idle_until: int | None = self.tl.steps
        idle_pairs: list = []
        open_first = list(dict.fromkeys(opens))
        pairs, index, quiet = self.tl.pairs, self.index, self.quiet
        bulk = not self.per_candle_skip
        open_pp = self.local_trade.bt_trades_open_pp
        for pos, name in enumerate(open_first):
            j = index[name]
            if bulk and (window := quiet.get(j)) is not None:
                # fast path: a quiet trade whose skipped candles were applied at once
                pair = pairs[j]
                i = pair.row_at[step]
                trades = open_pp.get(name)
                if 0 <= i < window[1] and trades and len(trades) == 1 and trades[0] is window[0]:
                    if self.capturing:
                        self._capture(now, pair.base, pair.opens[i])
                    if idle_until is not None:  # the step that processes row window[1]
                        idle_until = min(idle_until, bisect_left(pair.count, window[1] + 1))
                        idle_pairs.append(pair)
                    continue
            idle_until = None
            self._visit(step, now, j, opens, pos, True)
        skip = set(open_first)
        names = self.names
        candidates = sorted({*(signals or ()), *self.nonzero})
        done = -1
        while candidates:
            j = candidates.pop(0)
            if j <= done or names[j] in skip:
                continue
            done = j
            idle_until = None
            if self._visit(step, now, j, opens, None, False) and self.capturing:
                # wallets changed: later pairs' base wallets may have become non-zero
                candidates = sorted({*candidates, *(x for x in self.nonzero if x > j)})
        if self.detail is not None and self.detail.spread:
            self._sync(step, _ALL)  # every pair has processed this step's main row
            if (last := self.detail.run(step, now, opens)) is not None:
                self.last_date[step] = last
            self._wallets_changed()
        return None if idle_until is None else (idle_until, idle_pairs)

    def _visit(self, step: int, now: datetime, j: int, opens: list[str], pos: int | None,
               was_open: bool) -> bool:
        """One pair-candle in the generator's order; True when the wallets changed."""
        pair = self.tl.pairs[j]
        i = pair.row_at[step]
        if i < 0:
            return False  # validate_row: no row for this pair at this step
        name = pair.name
        if self.capturing:
            self._capture(now, pair.base, pair.opens[i])
        trades = self.local_trade.bt_trades_open_pp.get(name)
        has_open = bool(trades)
        if was_open and not has_open:
            return False  # the generator skips a pair whose trades closed in this candle
        trade_dir = pair.signals.get(step)
        if not has_open and trade_dir is None:
            return False  # backtest_loop would do nothing
        if has_open and self.scanner is not None and self._quiet(pair, trades, i):
            return False
        self._call(step, now, pair, pair.rows[i], trade_dir, opens)
        return self._wallets_changed()

    def _exit_settings(self) -> tuple:
        from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import exit_settings_key

        return exit_settings_key(self.bt.strategy)

    def _scanner_current(self) -> bool:
        """Rebuild the scanner (dropping every quiet window) when user code changed the
        strategy's exit settings; False when the new settings are outside its proofs."""
        if self.user_code:
            key = self._exit_settings()
            if key != self.settings_key:
                from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import ExitScanner

                self.settings_key = key
                self.quiet.clear()
                self.scanner, reason = ExitScanner.build(self.bt)
                if self.scanner is None:
                    logger.info("freqtrade-opt fast_loop: exit scan off from here on: %s", reason)
        return self.scanner is not None

    def _quiet(self, pair: Any, trades: list, i: int) -> bool:
        """The open trade's check on row `i` provably only moves max/min rates: skip it."""
        if len(trades) != 1 or not pair.aligned or not self._scanner_current():
            return False
        trade = trades[0]
        j = pair.index
        window = self.quiet.get(j)
        if window is not None and window[0] is trade and i < window[1] and (
                not self.user_code or window[2] == _trade_key(trade)):
            if self.per_candle_skip:
                self.scanner.skip(trade, self.arrays[j], i, i + 1)
            return True
        arrays = self.arrays.get(j)
        if arrays is None:
            from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import PairArrays

            arrays = self.arrays[j] = PairArrays.from_rows(pair.rows)
        until = self.scanner.quiet_until(trade, arrays, i, limit=pair.last_row + 1)
        if until <= i:
            self.quiet.pop(j, None)
            return False
        self.quiet[j] = (trade, until, _trade_key(trade) if self.user_code else None)
        self.scanner.skip(trade, arrays, i, i + 1 if self.per_candle_skip else until)
        return True

    def _call(self, step: int, now: datetime, pair: Any, row: Any, trade_dir: str | None,
              opens: list[str]) -> None:
        bt = self.bt
        self._flush_progress()
        if self.order is None:
            self._step_order(opens)
        self._sync(step, self.order_pos[pair.name])
        bt.dataprovider._set_dataframe_max_date(now)
        can_enter = not (now == self.end_date)
        if self.detail is not None:
            row = self.detail.first(pair.name, row, trade_dir)
        self.call_loop(row, pair.name, now, trade_dir, can_enter)

    def call_loop(self, row: Any, name: str, now: datetime, trade_dir: str | None,
                  can_enter: bool) -> None:
        """``backtest_loop`` as ``backtest`` calls it (twice for a reversing short)."""
        bt = self.bt
        if not bt._can_short or trade_dir is None:
            bt.backtest_loop(row, name, now, trade_dir, can_enter)
        else:
            for _ in (0, 1):
                a = bt.backtest_loop(row, name, now, trade_dir, can_enter)
                if not a or a == trade_dir:
                    break


def _trade_key(trade: Any) -> tuple:
    """What a quiet window's proof read from its trade besides max/min rates (user code could
    change it between two candles of the window)."""
    return (trade.stop_loss, trade.initial_stop_loss, trade.amount, trade.open_rate,
            trade.fee_close, trade.leverage, trade.is_short, trade.stake_amount)
