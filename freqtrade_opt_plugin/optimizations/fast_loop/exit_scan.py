"""Exact skipping of quiet candles for an open trade in the backtest loop.

`Backtesting._check_trade_exit` runs on every candle of an open trade, yet almost every call only
moves the trade's ``max_rate``/``min_rate``. `ExitScanner.quiet_until` finds, with numpy, the
first row from which Freqtrade's own check must run again; every row before it is proven to
produce no exit, no stop-loss move and no order; `ExitScanner.skip` then applies exactly what the
skipped checks would have done (``adjust_min_max_rates`` with each row's high/low).

The proof never approximates a decision. Per row a candle is quiet when:

* its open/high/low are finite and > 0 (so ``high or rate`` is the high, no NaN semantics);
* stoploss / liquidation: ``low > stop_loss`` (long) / ``high < stop_loss`` (short), the very
  float comparison Freqtrade makes against a stop that cannot move inside the window;
* ROI: the candle's best rate is on the safe side of a *verified* bound. `calc_profit_ratio` is
  monotone in the rate (exact decimal products, correctly rounded float steps, ``round(.., 8)``),
  so a bound ``R`` with ``calc_profit_ratio(R) <= roi`` (checked with Freqtrade's own function)
  proves every rate beyond it quiet. Rows use the smallest ROI of the durations d-1..d+1 minutes;
* trailing stop: the high (long) / low (short) cannot move the stop: verified the same way with
  Freqtrade's ``price_to_precision`` for every stoploss value the row could use, or (with
  ``trailing_only_offset_is_reached``) its profit stays below the offset;
* no exit signal on the row (when ``use_exit_signal``); no funding-fee row (futures);
* it is not the last row of the pair's data.

Configurations whose per-candle check calls user code or changes more state (custom exit,
custom stoploss, custom ROI, position adjustment, margin, timeframe-detail, overridden strategy
internals) are refused by `ExitScanner.build` with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from freqtrade_opt_plugin.optimizations import column_rows
from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan_guard import (
    FINGERPRINTS,
    _cached_mismatches,
    fingerprint_mismatches,
    live_fingerprints,
)


# Column positions of Freqtrade's row lists (freqtrade.optimize.backtesting.HEADERS).
DATE_IDX, OPEN_IDX, HIGH_IDX, LOW_IDX = 0, 1, 2, 3
ELONG_IDX, ESHORT_IDX = 6, 8

_FIRST_CHUNK = 32
_MAX_CHUNK = 1 << 14
_SEARCH_STEPS = 40

#: IStrategy methods a strategy must not override (the proof reads their exact code).
__all__ = [
    "FINGERPRINTS", "ExitScanner", "PairArrays", "fingerprint_mismatches", "live_fingerprints",
]

_STRATEGY_INTERNALS = (
    "should_exit", "ft_stoploss_adjust", "ft_stoploss_reached", "min_roi_reached",
    "min_roi_reached_entry",
)


_SETTINGS = (
    "roi_keys", "roi_values", "stoploss", "trailing_stop", "trailing_stop_positive",
    "trailing_stop_positive_offset", "trailing_only_offset_is_reached", "use_exit_signal",
)


#: Strategy attributes an exit decision reads at run time (`exit_settings_key`).
_WATCHED = (
    "stoploss", "trailing_stop", "trailing_stop_positive", "trailing_stop_positive_offset",
    "trailing_only_offset_is_reached", "use_exit_signal", "exit_profit_only",
    "exit_profit_offset", "ignore_roi_if_entry_signal", "use_custom_stoploss", "use_custom_roi",
    "position_adjustment_enable",
)


def exit_settings_key(strategy: Any) -> tuple:
    """A cheap snapshot of what the scanner's proofs assume about the strategy (its ROI table,
    stoploss, trailing and exit options, order types): user code that changes any of them
    mid-run makes every quiet window proven before void."""
    roi = getattr(strategy, "minimal_roi", None)
    roi_items = tuple(roi.items()) if isinstance(roi, dict) else (id(roi), roi)
    order_types = getattr(strategy, "order_types", None)
    return (roi_items, tuple(getattr(strategy, name, None) for name in _WATCHED),
            tuple(order_types.items()) if isinstance(order_types, dict) else order_types)


@dataclass(frozen=True)
class PairArrays:
    """Per-pair numpy columns of Backtesting's row lists, built once per backtest."""

    high_objects: Sequence[Any] = field(repr=False)  # the rows' own high objects
    low_objects: Sequence[Any] = field(repr=False)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    timestamp_us: np.ndarray  # row date as integer microseconds since the epoch
    minutes: np.ndarray  # row date in float minutes relative to the first row (ROI lookups)
    valid: np.ndarray  # open/high/low finite and > 0
    exit_long: np.ndarray  # bool(row[ELONG_IDX])
    exit_short: np.ndarray  # bool(row[ESHORT_IDX])

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> PairArrays:
        """Build from one pair's ``data[pair]`` (``Backtesting._get_ohlcv_as_lists``; plain row
        lists or `column_rows.ColumnRows`).

        Raises ValueError naming the column when a price or date cannot be read.
        """
        import pandas as pd

        def column(idx: int, name: str) -> tuple[Sequence[Any], np.ndarray]:
            objects = column_rows.column(rows, idx)
            try:
                return objects, np.array(objects, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(f"exit scan: {name} column is not numeric: {err}") from None

        open_ = column(OPEN_IDX, "open")[1]
        high_objects, high = column(HIGH_IDX, "high")
        low_objects, low = column(LOW_IDX, "low")
        if len(rows) and getattr(column_rows.first_date(rows), "tzinfo", None) is None:
            raise ValueError("exit scan: row dates have no time zone (Freqtrade uses UTC)")
        try:  # Timestamp.value: nanoseconds whatever the unit (fast path)
            nanos = column_rows.dates_ns(rows)
        except (AttributeError, TypeError, OverflowError, ValueError):
            try:
                nanos = pd.DatetimeIndex(list(column_rows.column(rows, DATE_IDX))
                                         ).as_unit("ns").asi8
            except (TypeError, ValueError) as err:
                raise ValueError(f"exit scan: date column is not a date: {err}") from None
        # Timestamp.to_pydatetime() drops nanoseconds: floor to microseconds like it does.
        timestamp_us = nanos // 1000
        first = timestamp_us[0] if len(rows) else 0
        minutes = (timestamp_us - first) / 60e6
        with np.errstate(invalid="ignore"):
            valid = (
                np.isfinite(open_) & np.isfinite(high) & np.isfinite(low)
                & (open_ > 0) & (high > 0) & (low > 0)
            )
        return cls(
            high_objects=high_objects, low_objects=low_objects, open=open_, high=high, low=low,
            timestamp_us=timestamp_us, minutes=minutes, valid=valid,
            exit_long=_truth(column_rows.column(rows, ELONG_IDX)),
            exit_short=_truth(column_rows.column(rows, ESHORT_IDX)),
        )

    def __len__(self) -> int:
        return len(self.open)


def _truth(values: Sequence[Any]) -> np.ndarray:
    """``bool(v)`` of each value."""
    return np.fromiter(map(bool, values), dtype=bool, count=len(values))


def _verified_bound(
    estimate: float, safe: Callable[[float], bool], direction: int
) -> float:
    """A rate near `estimate` for which `safe` holds, searched away from it in `direction`.

    `safe` must be monotone (true for every rate further in `direction`). Returns -inf
    (direction -1) / +inf (direction +1) -- "no rate is proven safe" -- when nothing is found.
    """
    fallback = -math.inf if direction < 0 else math.inf
    if not (math.isfinite(estimate) and estimate > 0):
        return fallback
    step = estimate * 2.0**-44
    rate = estimate
    for _ in range(_SEARCH_STEPS):
        try:
            if safe(rate):
                return rate
        except (ArithmeticError, ValueError, TypeError):
            return fallback
        rate = estimate + direction * step
        step *= 4.0
        if not (math.isfinite(rate) and rate > 0):
            return fallback
    return fallback


@dataclass(frozen=True)
class _TradeBounds:
    """Per-trade rates: beyond them (in the trade's favourable direction) a row may fire."""

    roi_rates: np.ndarray  # per ROI step (+ sentinel last): long: max safe high; short: min low
    trail_rate: float  # long: max safe high; short: min safe low (±inf: no trailing)


def _replaced_here(backtesting: Any) -> str | None:
    """A proof-relevant function replaced where `guard.replaced` does not look (it checks the
    classes and defining modules): on the ``Backtesting`` or strategy instance (e.g. a test's
    ``mocker.spy(backtesting, "_check_trade_exit")``, which counts calls the scan skips), or the
    ``price_to_precision`` binding ``LocalTrade.adjust_stop_loss`` calls (in ``trade_model``)."""
    import freqtrade.persistence.trade_model as trade_model

    from freqtrade_opt_plugin.optimizations.fast_loop.guard import _is_freqtrades_own

    instances = {"Backtesting": backtesting, "IStrategy": getattr(backtesting, "strategy", None)}
    for target in FINGERPRINTS:
        owner, _, name = target.partition(":")[2].rpartition(".")
        if name in getattr(instances.get(owner), "__dict__", {}):
            return f"{owner}.{name} (on the instance)"
    if not _is_freqtrades_own(getattr(trade_model, "price_to_precision", None),
                              "freqtrade.exchange.exchange_utils", "price_to_precision"):
        return "freqtrade.persistence.trade_model.price_to_precision"
    return None


@dataclass
class ExitScanner:
    """Finds and skips the candles of an open trade on which `_check_trade_exit` does nothing.

    Build with `ExitScanner.for_run(backtesting)` (or `build` for the refusal reason).
    """

    roi_keys: tuple[float, ...]
    roi_values: tuple[float, ...]
    stoploss: float
    trailing_stop: bool
    trailing_stop_positive: float | None
    trailing_stop_positive_offset: float
    trailing_only_offset_is_reached: bool
    use_exit_signal: bool
    funding_fee_us: int | None = None  # futures: funding rows are never skipped
    strategy: Any = field(default=None, repr=False, compare=False)
    _roi_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._keys = np.asarray(self.roi_keys, dtype=np.float64)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def for_run(cls, backtesting: Any) -> ExitScanner | None:
        """The scanner for this run's strategy and configuration, or None when unsupported."""
        return cls.build(backtesting)[0]

    @classmethod
    def build(cls, backtesting: Any) -> tuple[ExitScanner | None, str]:
        """``(scanner, "")`` or ``(None, reason)`` for `backtesting`'s current strategy."""
        from freqtrade.enums import TradingMode

        if bad := _cached_mismatches():
            names = ", ".join(t.rpartition(":")[2] for t in bad)
            return None, f"unverified Freqtrade source ({names})"
        from freqtrade_opt_plugin.optimizations.fast_loop.guard import replaced

        if swapped := replaced(FINGERPRINTS):
            names = ", ".join(t.rpartition(":")[2] for t in swapped)
            return None, f"replaced at run time: {names}"
        if swapped := _replaced_here(backtesting):
            return None, f"replaced at run time: {swapped}"
        if getattr(backtesting, "timeframe_detail", ""):
            return None, "timeframe-detail is set (rows are detail candles)"
        mode = getattr(backtesting, "trading_mode", None)
        funding_us = None
        if mode == TradingMode.FUTURES:
            secs = getattr(backtesting, "funding_fee_timeframe_secs", None)
            if not isinstance(secs, int) or secs <= 0:
                return None, f"futures without a valid funding fee interval ({secs!r})"
            funding_us = secs * 1_000_000
        elif mode != TradingMode.SPOT:
            return None, f"trading mode {mode!r} (margin interest depends on the clock)"
        scanner, reason = cls.from_strategy(backtesting.strategy)
        if scanner is not None:
            scanner.funding_fee_us = funding_us
        return scanner, reason

    @classmethod
    def from_strategy(cls, strategy: Any) -> tuple[ExitScanner | None, str]:
        """Scanner for a strategy's exit settings (spot), or ``(None, reason)``."""
        from freqtrade.strategy.interface import IStrategy

        kind = type(strategy)
        for name in _STRATEGY_INTERNALS:
            if getattr(kind, name, None) is not getattr(IStrategy, name) or name in getattr(
                    strategy, "__dict__", {}):
                return None, f"the strategy overrides IStrategy.{name}"
        if getattr(strategy, "position_adjustment_enable", False):
            return None, "position_adjustment_enable (adjust_trade_position runs every candle)"
        if getattr(strategy, "use_custom_stoploss", False):
            return None, "use_custom_stoploss (custom_stoploss runs every candle)"
        if getattr(strategy, "use_custom_roi", False):
            return None, "use_custom_roi (custom_roi runs every candle)"
        use_exit_signal = bool(strategy.use_exit_signal)
        if use_exit_signal and (kind.custom_exit is not IStrategy.custom_exit
                                or "custom_exit" in getattr(strategy, "__dict__", {})):
            return None, "custom_exit is defined and use_exit_signal is on"
        raw = [*strategy.minimal_roi.items()] if isinstance(
            getattr(strategy, "minimal_roi", None), dict) else None
        numbers = [] if raw is None else [x for pair in raw for x in pair]
        numbers += [getattr(strategy, "stoploss", None),
                    getattr(strategy, "trailing_stop_positive_offset", None)]
        if getattr(strategy, "trailing_stop_positive", None) is not None:
            numbers.append(strategy.trailing_stop_positive)
        if raw is None or not all(
            isinstance(x, Real) and not isinstance(x, bool) for x in numbers
        ):
            return None, f"non-numeric ROI/stoploss/trailing settings: {numbers}"
        try:
            roi = sorted((float(k), float(v)) for k, v in raw)
            stoploss = float(strategy.stoploss)
            tsp = strategy.trailing_stop_positive
            tsp = None if tsp is None else float(tsp)
            offset = float(strategy.trailing_stop_positive_offset)
        except (AttributeError, TypeError, ValueError) as err:
            return None, f"unreadable exit settings: {err}"
        values = [v for _, v in roi] + [stoploss, offset] + ([] if tsp is None else [tsp])
        if not all(math.isfinite(v) for v in values) or any(
            not math.isfinite(k) for k, _ in roi
        ):
            return None, f"non-finite ROI/stoploss/trailing values: {values}"
        return cls(
            roi_keys=tuple(k for k, _ in roi),
            roi_values=tuple(v for _, v in roi),
            stoploss=stoploss,
            trailing_stop=bool(strategy.trailing_stop),
            trailing_stop_positive=tsp,
            trailing_stop_positive_offset=offset,
            trailing_only_offset_is_reached=bool(strategy.trailing_only_offset_is_reached),
            use_exit_signal=use_exit_signal,
            strategy=strategy,
        ), ""

    def settings_changed(self) -> bool:
        """True when the strategy's exit settings differ from those this scanner was built on
        (e.g. changed by a callback mid-run): quiet windows computed before are then void."""
        if self.strategy is None:
            return False
        rebuilt, _ = type(self).from_strategy(self.strategy)
        return rebuilt is None or any(
            getattr(rebuilt, name) != getattr(self, name) for name in _SETTINGS)

    # -- per-trade bounds ---------------------------------------------------------------------

    def _bounds(self, trade: Any) -> _TradeBounds:
        short = bool(trade.is_short)
        direction = 1 if short else -1  # direction in which rates become safe
        key = (
            trade.open_rate, trade.amount, trade.open_trade_value, trade.fee_close,
            trade.funding_fees, trade.leverage, short, trade.trading_mode,
        )
        roi_rates = self._roi_cache.get(key)
        if roi_rates is None:
            rates = []
            for roi in self.roi_values:
                try:
                    estimate = float(trade.calc_close_rate_for_roi(roi))
                except (ArithmeticError, ValueError, TypeError):
                    estimate = math.nan
                rates.append(_verified_bound(
                    estimate, lambda r, roi=roi: trade.calc_profit_ratio(r) <= roi, direction))
            # Sentinel at index -1: durations before the first ROI step never exit by ROI.
            rates.append(math.inf if not short else -math.inf)
            roi_rates = np.array(rates, dtype=np.float64)
            if len(self._roi_cache) > 4096:
                self._roi_cache.clear()
            self._roi_cache[key] = roi_rates
        return _TradeBounds(roi_rates, self._trail_rate(trade, short, direction))

    def _trail_rate(self, trade: Any, short: bool, direction: int) -> float:
        """Rates on the safe side of it cannot move a trailing stop (±inf: no trailing)."""
        if not self.trailing_stop:
            return math.inf if not short else -math.inf
        from freqtrade.exchange.exchange_utils import ROUND_DOWN, ROUND_UP, price_to_precision

        stop = trade.stop_loss
        leverage = trade.leverage or 1.0
        values = [self.stoploss] + (
            [] if self.trailing_stop_positive is None else [self.trailing_stop_positive])
        bounds = []
        for value in values:
            factor = abs(value / leverage)

            def new_stop(rate: float, factor: float = factor) -> float:
                # adjust_stop_loss's arithmetic and rounding, for one candle bound
                loss = float(rate * (1 + factor)) if short else float(rate * (1 - factor))
                return price_to_precision(
                    loss, trade.price_precision, trade.precision_mode_price,
                    rounding_mode=ROUND_DOWN if short else ROUND_UP)

            if short:
                bounds.append(_verified_bound(
                    stop / (1 + factor), lambda r, f=new_stop: f(r) >= stop, direction))
            elif factor < 1:
                bounds.append(_verified_bound(
                    stop / (1 - factor), lambda r, f=new_stop: f(r) <= stop, direction))
            else:
                bounds.append(-math.inf)  # a stop at <= 0: rounding not proven, never skip
        rate = max(bounds) if short else min(bounds)
        if self.trailing_only_offset_is_reached:
            offset = self.trailing_stop_positive_offset
            try:
                estimate = float(trade.calc_close_rate_for_roi(offset))
            except (ArithmeticError, ValueError, TypeError):
                estimate = math.nan
            below = _verified_bound(
                estimate, lambda r: trade.calc_profit_ratio(r) < offset, direction)
            rate = min(rate, below) if short else max(rate, below)
        return rate

    # -- scanning -----------------------------------------------------------------------------

    def quiet_until(
        self, trade: Any, pair: PairArrays, row_index: int, limit: int | None = None
    ) -> int:
        """First row >= `row_index` on which Freqtrade's exact `_check_trade_exit` must run.

        Rows ``row_index .. result-1`` provably produce no exit and change only
        ``max_rate``/``min_rate`` (apply with `skip`). Assumes each check is made at the row's
        own date (``current_time == row date``). `limit` caps the result; the pair's last row is
        never skipped. Returns `row_index` when the trade's state is outside the proof.
        """
        from freqtrade.persistence.trade_model import LocalTrade

        end = len(pair) - 1
        if limit is not None:
            end = min(end, limit)
        if row_index >= end:
            return row_index
        if (
            type(trade) is not LocalTrade
            or not trade.is_open
            or not trade.stop_loss
            or trade.initial_stop_loss_pct is None
            or trade.has_open_orders
        ):
            return row_index
        bounds = self._bounds(trade)
        open_minutes = self._open_minutes(trade, pair)
        start, size = row_index, _FIRST_CHUNK
        while start < end:
            stop = min(end, start + size)
            quiet = self._quiet(trade, pair, start, stop, bounds, open_minutes)
            loud = np.flatnonzero(~quiet)
            if len(loud):
                return start + int(loud[0])
            start, size = stop, min(size * 4, _MAX_CHUNK)
        return end

    @staticmethod
    def _open_minutes(trade: Any, pair: PairArrays) -> float:
        if not len(pair):
            return 0.0
        first_us = int(pair.timestamp_us[0])
        open_us = round(trade.open_date_utc.timestamp() * 1e6)
        return (open_us - first_us) / 60e6

    def _quiet(
        self, trade: Any, pair: PairArrays, start: int, stop: int, bounds: _TradeBounds,
        open_minutes: float,
    ) -> np.ndarray:
        high, low = pair.high[start:stop], pair.low[start:stop]
        short = bool(trade.is_short)
        liquidation = trade.liquidation_price
        quiet = pair.valid[start:stop].copy()
        with np.errstate(invalid="ignore"):
            # Stoploss and liquidation: Freqtrade's own comparisons against fixed prices.
            if short:
                quiet &= high < trade.stop_loss
                if liquidation:
                    quiet &= high < liquidation
            else:
                quiet &= low > trade.stop_loss
                if liquidation:
                    quiet &= low > liquidation
            # ROI: the smallest ROI over durations d-1 .. d+1 minutes (float-safe lookup).
            if self.roi_keys:
                duration = np.floor(pair.minutes[start:stop] - open_minutes)
                around = np.concatenate((duration - 1.0, duration, duration + 1.0))
                steps = np.searchsorted(self._keys, around, side="right") - 1
                limits = bounds.roi_rates[steps].reshape(3, -1)
                if short:
                    quiet &= low >= limits.max(axis=0)
                else:
                    quiet &= high <= limits.min(axis=0)
            # Trailing stop: the candle bound cannot move the stop.
            if self.trailing_stop:
                quiet &= (low >= bounds.trail_rate) if short else (high <= bounds.trail_rate)
        if self.use_exit_signal:
            quiet &= ~(pair.exit_short if short else pair.exit_long)[start:stop]
        if self.funding_fee_us:
            # Funding rows (timestamp % interval == 0) are left to Freqtrade; a margin of 10 us.
            rest = pair.timestamp_us[start:stop] % self.funding_fee_us
            quiet &= (rest > 10) & (rest < self.funding_fee_us - 10)
        return quiet

    def skip(self, trade: Any, pair: PairArrays, start: int, end: int) -> None:
        """Apply the side effects of Freqtrade's checks on the quiet rows ``start .. end-1``.

        That is ``trade.adjust_min_max_rates(high, low)`` row by row, done in one step: the
        result is the same value (and the same row object on ties: the last maximal row).
        """
        if end <= start:
            return
        high = pair.high[start:end]
        low = pair.low[start:end]
        top = start + len(high) - 1 - int(np.argmax(high[::-1]))
        bottom = start + len(low) - 1 - int(np.argmin(low[::-1]))
        trade.max_rate = max(pair.high_objects[top], trade.max_rate or trade.open_rate)
        trade.min_rate = min(pair.low_objects[bottom], trade.min_rate or trade.open_rate)
