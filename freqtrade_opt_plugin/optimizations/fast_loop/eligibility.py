"""Which runs the fast loop handles, decided once per run from engine, strategy and config.

A run is eligible when the driver provably reproduces Freqtrade's loop for it:

* the installed Freqtrade is the verified release (`guard.mismatches` is empty);
* ``Backtesting``'s loop methods, the DataProvider's slice setters and ``Wallets.get_total`` are
  Freqtrade's own (no subclass or instance override);
* spot trading, or futures with isolated or cross margin (long and short, leverage, funding
  fees and liquidations all happen inside Freqtrade's own ``backtest_loop`` calls; the exit
  scanner never skips a funding row or a candle reaching the liquidation price, and is off for
  cross margin, where every fill moves every open trade's liquidation price);
* a static pairlist (no ``enable_dynamic_pairlist``);
* with or without timeframe-detail: a main candle's later detail indexes run through `detail`
  (Freqtrade's own ``get_detail_data``, ``ignore_expired_candle`` and ``backtest_loop``); the
  exit scanner is off there (its proofs are about main candles, not detail rows).

Margin trading (interest by the clock) is not covered by the differential suite
(tests/optimizations/fast_loop/test_futures_differential.py covers futures): it runs
Freqtrade's loop.

Strategy callbacks never make a run ineligible: every callback Freqtrade calls inside
``backtest_loop`` still runs there, on the same candles, with the same DataProvider state, and a
user-defined ``bot_loop_start`` is called on every candle exactly as Freqtrade calls it.
Callbacks only decide how the exit scanner's skipped candles are applied (`Plan.observed`):
candle by candle when user code could read another trade's ``max_rate``/``min_rate``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from freqtrade_opt_plugin.optimizations.fast_loop import guard


logger = logging.getLogger(__name__)

#: Backtesting methods whose behaviour the driver reproduces or relies on.
ENGINE_METHODS = (
    "time_pair_generator", "_time_pair_generator_det", "_time_generator", "_time_generator_det",
    "validate_row", "_sync_pair_index", "_capture_wallet", "check_for_trade_entry",
    "backtest_loop", "handle_left_open", "check_abort", "_increment_progress",
    "_set_progress_step", "reset_backtest", "get_detail_data",
)
PROVIDER_METHODS = ("_set_dataframe_max_index", "_set_dataframe_max_date", "clear_cache")

#: IStrategy methods that never run inside the trade loop (data preparation, set-up, plots).
_NOT_IN_LOOP = frozenset({
    "populate_indicators", "populate_buy_trend", "populate_entry_trend", "populate_sell_trend",
    "populate_exit_trend", "informative_pairs", "version", "plot_annotations", "bot_start",
    "populate_any_indicators", "feature_engineering_expand_all", "feature_engineering_expand_basic",
    "feature_engineering_standard", "set_freqai_targets", "get_strategy_name", "load_freqAI_model",
    "start", "shutdown", "ft_bot_start", "ft_bot_cleanup", "bot_loop_start",
})


@dataclass(frozen=True)
class Plan:
    """The decision for one run: eligible or not (with the reason), and how to run it."""

    eligible: bool
    reason: str
    bot_loop_start: bool = False  # user-defined: call it on every candle
    observed: tuple[str, ...] = ()  # user-defined callbacks that run inside the loop
    scanner: Any = None  # an exit_scan.ExitScanner, or None
    scanner_reason: str = ""

    def describe(self) -> str:
        if not self.eligible:
            return f"not eligible: {self.reason}"
        scan = ("exit scan on" if self.scanner is not None
                else f"exit scan off ({self.scanner_reason})")
        calls = ", ".join(self.observed) if self.observed else "none"
        return f"eligible ({self.reason}); {scan}; user callbacks in the loop: {calls}"


def _own(obj: Any, cls: type, name: str) -> bool:
    """`obj.name` resolves to `cls`'s own attribute (no subclass or instance override)."""
    if name in getattr(obj, "__dict__", {}):
        return False
    for klass in type(obj).__mro__:
        if name in vars(klass):
            return klass is cls
    return False


def user_callbacks(strategy: Any) -> tuple[str, ...]:
    """IStrategy methods the strategy overrides that Freqtrade may call inside the loop."""
    from freqtrade.strategy.interface import IStrategy

    found = []
    for name, value in vars(IStrategy).items():
        if name.startswith("__") or name in _NOT_IN_LOOP or not callable(value):
            continue
        if not _own(strategy, IStrategy, name):
            found.append(name)
    return tuple(sorted(found))


def default_bot_loop_start(strategy: Any) -> bool:
    """The strategy's bot_loop_start is IStrategy's own (an empty body, fingerprinted)."""
    from freqtrade.strategy.interface import IStrategy

    return getattr(strategy.bot_loop_start, "__func__", None) is IStrategy.bot_loop_start


def _engine_problem(backtesting: Any) -> str | None:
    from freqtrade.data.dataprovider import DataProvider
    from freqtrade.optimize.backtesting import Backtesting
    from freqtrade.wallets import Wallets

    for name in ENGINE_METHODS:
        if not _own(backtesting, Backtesting, name):
            return f"Backtesting.{name} is overridden"
    for name in PROVIDER_METHODS:
        if not _own(backtesting.dataprovider, DataProvider, name):
            return f"DataProvider.{name} is overridden"
    if not _own(backtesting.wallets, Wallets, "get_total"):
        return "Wallets.get_total is overridden"
    return None


def _scanner(backtesting: Any) -> tuple[Any, str]:
    try:
        from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import ExitScanner
    except ImportError as exc:
        return None, f"exit scanner unavailable ({exc})"
    if backtesting._position_stacking:
        return None, "position stacking"
    if backtesting.timeframe_detail_td:
        return None, "timeframe-detail (quiet windows are proven on main candles only)"
    margin = (getattr(backtesting, "margin_mode", None), backtesting.config.get("margin_mode"))
    if "cross" in margin:
        return None, "cross margin (fills update every trade's liquidation price)"
    scanner, reason = ExitScanner.build(backtesting)
    return scanner, reason


def _mode_problem(backtesting: Any, modes: Any) -> str | None:
    """Why the run's trading / margin mode is not covered, or None (spot; futures with isolated
    or cross margin)."""
    mode = backtesting.trading_mode
    if mode == modes.SPOT:
        return None
    if mode == modes.FUTURES:
        margin = backtesting.margin_mode  # what backtest_loop reads (a str enum or a str)
        if margin in ("isolated", "cross"):
            return None
        return (f"futures with margin mode {getattr(margin, 'value', margin)!r} (only isolated "
                "and cross margin are covered by the differential suite)")
    return (f"trading mode {getattr(mode, 'value', mode)} (not yet covered by the differential "
            "suite)")


def decide(backtesting: Any) -> Plan:
    """The plan for the next ``backtest()`` call of `backtesting`."""
    if bad := guard.mismatches():
        return Plan(False, "unverified Freqtrade release (source differs: "
                           + ", ".join(t.rpartition(":")[2] for t in bad) + ")")
    if swapped := guard.replaced():
        return Plan(False, "replaced at run time: "
                           + ", ".join(t.rpartition(":")[2] for t in swapped))
    if problem := _engine_problem(backtesting):
        return Plan(False, problem)
    from freqtrade.enums import TradingMode

    if problem := _mode_problem(backtesting, TradingMode):
        return Plan(False, problem)
    if backtesting.dynamic_pairlist:
        return Plan(False, "dynamic pairlist (enable_dynamic_pairlist)")
    if not backtesting.timeframe_td:
        return Plan(False, "no timeframe")
    strategy = backtesting.strategy
    observed = user_callbacks(strategy)
    user_loop_start = not default_bot_loop_start(strategy)
    if user_loop_start:
        observed = (*observed, "bot_loop_start")
    scanner, scanner_reason = _scanner(backtesting)
    mode = str(getattr(backtesting.trading_mode, "value", backtesting.trading_mode))
    if mode == "futures":
        margin = backtesting.margin_mode
        mode = f"futures ({getattr(margin, 'value', margin)} margin)"
    detail = (f"timeframe-detail {backtesting.timeframe_detail}"
              if backtesting.timeframe_detail_td else "no timeframe-detail")
    return Plan(True, f"{mode}, static pairlist, {detail}",
                bot_loop_start=user_loop_start, observed=observed, scanner=scanner,
                scanner_reason=scanner_reason)
