"""Exactness of `ExitScanner`: Freqtrade's per-candle `_check_trade_exit` loop versus
``quiet_until`` + ``skip`` followed by the same exact check.

A real offline `Backtesting` (static markets, SampleStrategy) runs both paths on twin
`LocalTrade` objects; the strategy's exit settings are set per example. Compared after every
exact check and after every skip: the full trade state (max/min rate, stop-loss fields, trailing
flag, exit reason, close date, exit orders), the exit row and reason.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from freqtrade.enums import TradingMode
from freqtrade.exchange.exchange_utils import ROUND_UP, price_to_precision
from freqtrade.persistence.trade_model import LocalTrade
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import (
    FINGERPRINTS,
    ExitScanner,
    PairArrays,
    fingerprint_mismatches,
)


DATA = Path(__file__).resolve().parents[2] / "data"
PAIR = "BTC/USDT"
EXIT_SETTINGS = (
    "minimal_roi", "stoploss", "trailing_stop", "trailing_stop_positive",
    "trailing_stop_positive_offset", "trailing_only_offset_is_reached", "use_exit_signal",
    "exit_profit_only", "exit_profit_offset", "ignore_roi_if_entry_signal", "use_custom_stoploss",
)
TRADE_FIELDS = (
    "max_rate", "min_rate", "stop_loss", "stop_loss_pct", "initial_stop_loss",
    "initial_stop_loss_pct", "is_stop_loss_trailing", "is_open", "exit_reason", "close_date",
    "funding_fees", "liquidation_price",
)


@pytest.fixture(scope="module")
def backtesting(tmp_path_factory):
    """A real Backtesting on an offline workspace, its strategy set (SampleStrategy)."""
    from freqtrade.commands.optimize_commands import setup_optimize_configuration
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    workspace = create_workspace(tmp_path_factory.mktemp("exit-scan") / "ws", [PAIR], days=1)
    install_static_markets()
    try:
        config = setup_optimize_configuration({
            "config": [str(workspace.config_path)], "user_data_dir": str(workspace.user_data),
            "strategy": "SampleStrategy", "timeframe": "5m", "export": "none",
        }, RunMode.BACKTEST)
        bt = Backtesting(config)
        bt._set_strategy(bt.strategylist[0])
        yield bt
    finally:
        uninstall_static_markets()


@pytest.fixture
def exit_settings(backtesting):
    """Set strategy exit settings for one test; restored afterwards."""
    strategy = backtesting.strategy
    saved = {name: getattr(strategy, name) for name in EXIT_SETTINGS}

    def apply(**values: Any) -> None:
        for name in EXIT_SETTINGS:
            setattr(strategy, name, saved[name])
        for name, value in values.items():
            assert name in EXIT_SETTINGS, name
            setattr(strategy, name, value)

    yield apply
    for name, value in saved.items():
        setattr(strategy, name, value)


# -- helpers --------------------------------------------------------------------------------------


def make_trade(
    rows: list, *, stoploss: float, open_rate: float | None = None, fee: float = 0.001,
    short: bool = False, leverage: float = 1.0, liquidation: float | None = None,
    funding: float = 0.0, price_precision: float | None = None, precision_mode: int | None = None,
    open_row: int = 0,
) -> LocalTrade:
    """A trade opened on `rows[open_row]` as Backtesting._enter_trade builds it."""
    open_rate = rows[open_row][1] if open_rate is None else open_rate
    futures = short or leverage != 1.0
    trade = LocalTrade(
        id=1, pair=PAIR, base_currency="BTC", stake_currency="USDT", open_rate=open_rate,
        open_rate_requested=open_rate, open_date=rows[open_row][0].to_pydatetime(),
        stake_amount=0.05, amount=0.05 * leverage / open_rate, amount_requested=0.05,
        fee_open=fee, fee_close=fee, is_open=True, timeframe=5, exchange="binance",
        is_short=short, trading_mode=TradingMode.FUTURES if futures else TradingMode.SPOT,
        leverage=leverage, amount_precision=None, price_precision=price_precision,
        precision_mode=precision_mode, precision_mode_price=precision_mode, contract_size=1.0,
        orders=[],
    )
    if futures:
        trade.funding_fees = funding
        trade.set_liquidation_price(liquidation)
    trade.adjust_stop_loss(trade.open_rate, stoploss, initial=True)
    return trade


def state(trade: LocalTrade) -> str:
    """Everything a check can change, as an exact (type-revealing) text."""
    values = [getattr(trade, name) for name in TRADE_FIELDS]
    orders = [(o.ft_order_side, o.price, o.amount, o.ft_order_tag, o.order_date, o.status)
              for o in trade.orders]
    return repr((values, orders))


def run_exact(bt, trade: LocalTrade, rows: list, start: int) -> tuple[Any, list[str]]:
    """Freqtrade's loop: the exact check on every row until one returns the trade."""
    states: list[str] = []
    for k in range(start, len(rows)):
        try:
            result = bt._check_trade_exit(trade, rows[k], rows[k][0].to_pydatetime())
        except Exception as err:  # a broken candle: the scanned path must fail alike
            states.append(state(trade))
            return (k, type(err).__name__), states
        states.append(state(trade))
        if result is not None:
            return k, states
    return None, states


def run_scanned(
    bt, scanner: ExitScanner, trade: LocalTrade, pair: PairArrays, rows: list, start: int,
    exact_states: list[str], piecewise: bool = False,
) -> tuple[Any, int]:
    """quiet_until + skip + the exact check; every state compared with the exact loop's.
    `piecewise`: skip candle by candle (the driver does when user callbacks may look)."""
    k, skipped = start, 0
    while k < len(rows):
        quiet = scanner.quiet_until(trade, pair, k)
        assert k <= quiet < len(rows)
        if piecewise:
            for i in range(k, quiet):
                scanner.skip(trade, pair, i, i + 1)
                assert state(trade) == exact_states[i - start], f"after skip of row {i}"
        else:
            scanner.skip(trade, pair, k, quiet)
        skipped += quiet - k
        if quiet > k:
            assert state(trade) == exact_states[quiet - 1 - start], f"after skip {k}..{quiet}"
        try:
            result = bt._check_trade_exit(trade, rows[quiet], rows[quiet][0].to_pydatetime())
        except Exception as err:
            assert state(trade) == exact_states[quiet - start], f"check at row {quiet}"
            return (quiet, type(err).__name__), skipped
        assert state(trade) == exact_states[quiet - start], f"check at row {quiet}"
        if result is not None:
            return quiet, skipped
        k = quiet + 1
    return None, skipped


def compare(bt, rows: list, start: int = 0, piecewise: bool = False, **trade_args: Any
            ) -> tuple[Any, int]:
    """Run both paths on twin trades; return (exit row or (row, error), skipped rows)."""
    scanner, reason = ExitScanner.build(bt)
    assert scanner is not None, reason
    pair = PairArrays.from_rows(rows)
    exact_trade = make_trade(rows, open_row=start, **trade_args)
    scanned_trade = make_trade(rows, open_row=start, **trade_args)
    assert state(exact_trade) == state(scanned_trade)
    exit_row, exact_states = run_exact(bt, exact_trade, rows, start)
    scanned_row, skipped = run_scanned(bt, scanner, scanned_trade, pair, rows, start, exact_states,
                                       piecewise)
    assert scanned_row == exit_row
    assert state(scanned_trade) == state(exact_trade)
    return exit_row, skipped


def row(date, o, h, low, c, enter=0.0, exit_=0.0, enter_short=0.0, exit_short=0.0) -> list:
    return [date, o, h, low, c, enter, exit_, enter_short, exit_short, "", ""]


# -- hypothesis: generated trades and candle paths ------------------------------------------------

START = pd.Timestamp("2024-03-01 00:00", tz="UTC")
PRECISIONS = [(None, None), (4, "tick"), (2, 8), (2, 5), (3, 5), (3, 8)]


@st.composite
def exit_configs(draw) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from([0, 1, 5, 10, 15, 20, 30, 40, 60, 120, 240]),
                         max_size=4, unique=True))
    roi = {k: draw(st.sampled_from([0.0, -0.01, -1.0, 0.001, 0.005, 0.01, 0.02, 0.04, 0.1])
                   | st.floats(-0.05, 0.2)) for k in sorted(keys)}
    tsp = draw(st.none() | st.sampled_from([0.001, 0.005, 0.01, 0.02]) | st.floats(0.0005, 0.1))
    return dict(
        minimal_roi=roi,
        stoploss=draw(
            st.sampled_from([-0.01, -0.02, -0.05, -0.1, -0.99]) | st.floats(-0.99, -0.01)),
        trailing_stop=draw(st.booleans()),
        trailing_stop_positive=tsp,
        trailing_stop_positive_offset=draw(st.sampled_from([0.0, 0.005, 0.01, 0.03])),
        trailing_only_offset_is_reached=draw(st.booleans()),
        use_exit_signal=draw(st.booleans()),
        exit_profit_only=draw(st.booleans()),
        ignore_roi_if_entry_signal=draw(st.booleans()),
    )


@st.composite
def candle_paths(draw) -> list:
    n = draw(st.integers(2, 120))
    price = 10 ** draw(st.floats(-6, 5))
    volatility = draw(st.sampled_from([0.0, 0.0005, 0.003, 0.01, 0.03]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    date = START
    rows = []
    for _ in range(n):
        flat = rng.random() < 0.15
        o = price
        c = o if flat else o * math.exp(rng.normal(0, volatility))
        h = max(o, c) * (1 if flat else math.exp(abs(rng.normal(0, volatility))))
        low = min(o, c) * (1 if flat else math.exp(-abs(rng.normal(0, volatility))))
        signals = [float(rng.random() < p) for p in (0.05, 0.04, 0.05, 0.04)]
        rows.append(row(date, o, h, low, c, *signals))
        price = c
        date += timedelta(minutes=5 * (1 if rng.random() > 0.1 else int(rng.integers(2, 30))))
    return rows


def threshold_prices(trade: LocalTrade, config: dict[str, Any]) -> list[float]:
    """Prices exactly at (and one ulp around) every ROI, stop and trailing threshold."""
    prices = [trade.stop_loss]
    for roi in [*config["minimal_roi"].values(), config["trailing_stop_positive_offset"]]:
        prices.append(trade.calc_close_rate_for_roi(roi))
    leverage = trade.leverage or 1.0
    for value in (config["stoploss"], config["trailing_stop_positive"]):
        if value is not None and abs(value / leverage) < 1:
            factor = abs(value / leverage)
            prices.append(trade.stop_loss / ((1 + factor) if trade.is_short else (1 - factor)))
    if trade.liquidation_price:
        prices.append(trade.liquidation_price)
    out = []
    for p in prices:
        if math.isfinite(p) and p > 0:
            out += [p, math.nextafter(p, 0), math.nextafter(p, math.inf)]
    return out


#: EXIT_SCAN_EXAMPLES=5000 for a deep run (CI: 250, ~10 s).
@settings(max_examples=int(os.environ.get("EXIT_SCAN_EXAMPLES", "250")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_generated_trades_match_the_exact_loop(backtesting, exit_settings, data):
    config = data.draw(exit_configs())
    exit_settings(**config)
    rows = data.draw(candle_paths())
    short = data.draw(st.booleans())
    leverage = data.draw(st.sampled_from([1.0, 1.0, 2.0, 5.0])) if short else 1.0
    mode, precision = data.draw(st.sampled_from(PRECISIONS))
    if precision == "tick":
        precision = rows[0][1] * 10.0 ** -data.draw(st.integers(2, 7))
    low0, high0 = rows[0][3], rows[0][2]
    trade_args = dict(
        stoploss=config["stoploss"], fee=data.draw(st.sampled_from([0.0, 0.001, 0.0025])),
        open_rate=data.draw(st.sampled_from([rows[0][1], low0, high0, (low0 + high0) / 2])),
        short=short, leverage=leverage, price_precision=precision, precision_mode=mode,
    )
    if short:
        trade_args["funding"] = data.draw(st.sampled_from([0.0, -1e-4, 2e-4]))
        if data.draw(st.booleans()):
            trade_args["liquidation"] = rows[0][1] * data.draw(st.floats(1.01, 1.5))
    # Put some highs/lows exactly on the thresholds of this very trade.
    probe = make_trade(rows, **trade_args)
    specials = threshold_prices(probe, config)
    for _ in range(data.draw(st.integers(0, 6)) if specials else 0):
        k = data.draw(st.integers(0, len(rows) - 1))
        price = data.draw(st.sampled_from(specials))
        column = data.draw(st.sampled_from([1, 2, 3, 4]))
        rows[k][column] = price
        rows[k][2] = max(rows[k][1:5])
        rows[k][3] = min(rows[k][1:5])
    if data.draw(st.integers(0, 9)) == 0:  # a broken candle: NaN or zero prices
        k = data.draw(st.integers(0, len(rows) - 1))
        rows[k][data.draw(st.sampled_from([1, 2, 3]))] = data.draw(st.sampled_from([math.nan, 0.0]))
    outcome, skipped = compare(backtesting, rows, piecewise=data.draw(st.booleans()), **trade_args)
    event("exit" if isinstance(outcome, int) else "error" if outcome else "no exit")
    event("skipped candles" if skipped else "nothing skipped")


# -- real data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows(backtesting) -> dict[str, list]:
    """SampleStrategy signals on the repository's 5m files, as Backtesting's row lists."""
    from freqtrade.configuration import TimeRange

    bt = backtesting
    bt.timerange = TimeRange()
    bt.required_startup = bt.strategy.startup_candle_count
    frames = {}
    for name in ("ETH_BTC", "LTC_BTC", "XRP_ETH"):
        frame = pd.read_feather(DATA / f"{name}-5m.feather")
        frames[name.replace("_", "/")] = frame
    return bt._get_ohlcv_as_lists(bt.strategy.advise_all_indicators(frames))


REAL_CONFIGS = {
    "sample": {},
    "no-exit-signal": dict(use_exit_signal=False),
    "long-roi": dict(minimal_roi={0: 0.2, 600: 0.05, 2000: 0.0}, stoploss=-0.2,
                     use_exit_signal=False),
    "trailing": dict(trailing_stop=True, stoploss=-0.05, minimal_roi={0: 0.5}),
    "trailing-positive-offset": dict(
        trailing_stop=True, trailing_stop_positive=0.01, trailing_stop_positive_offset=0.02,
        trailing_only_offset_is_reached=True, minimal_roi={0: 0.5}, stoploss=-0.08),
}


@pytest.mark.parametrize("name", list(REAL_CONFIGS))
def test_real_data_trades_match_the_exact_loop(backtesting, exit_settings, real_rows, name):
    exit_settings(**REAL_CONFIGS[name])
    total = skipped = exits = 0
    for rows in real_rows.values():
        for short in (False, True):
            for start in range(0, len(rows) - 1, 397 if len(rows) > 1000 else 71):
                window = rows[start:start + 300]
                exit_row, quiet = compare(
                    backtesting, window, stoploss=backtesting.strategy.stoploss,
                    short=short, leverage=2.0 if short else 1.0)
                total += len(window) if exit_row is None else exit_row + 1
                skipped += quiet
                exits += exit_row is not None
    assert exits > 10
    # The proof is not vacuous: most candles of an open trade are skipped.
    assert skipped > 0.5 * total, (skipped, total)


# -- targeted cases -------------------------------------------------------------------------------


def flat_rows(n: int, price: float = 100.0) -> list:
    return [row(START + timedelta(minutes=5 * i), price, price, price, price) for i in range(n)]


def test_exact_roi_threshold_is_left_to_freqtrade(backtesting, exit_settings):
    exit_settings(minimal_roi={0: 0.01}, stoploss=-0.1, use_exit_signal=False)
    rows = flat_rows(40)
    probe = make_trade(rows, stoploss=-0.1)
    target = probe.calc_close_rate_for_roi(0.01)
    for candidate in (math.nextafter(target, 0), target, math.nextafter(target, math.inf)):
        rows[30][2] = candidate
        exit_row, skipped = compare(backtesting, rows, stoploss=-0.1)
        assert skipped >= 29
        assert exit_row in (30, None)
    rows[30][2] = target * 1.001
    assert compare(backtesting, rows, stoploss=-0.1)[0] == 30


def test_exact_stop_price_and_roi_step_boundary(backtesting, exit_settings):
    exit_settings(minimal_roi={0: 0.05, 60: -0.01}, stoploss=-0.05, use_exit_signal=False)
    rows = flat_rows(30)
    probe = make_trade(rows, stoploss=-0.05)
    rows[20][3] = probe.stop_loss  # low exactly on the stop: Freqtrade exits (>=)
    assert compare(backtesting, rows, stoploss=-0.05)[0] == 12  # the 60-minute step fires first
    exit_settings(minimal_roi={0: 0.05}, stoploss=-0.05, use_exit_signal=False)
    assert compare(backtesting, rows, stoploss=-0.05)[0] == 20


def test_short_exact_stop_and_off_grid_roi(backtesting, exit_settings):
    """A high exactly on a short's stop exits; an ROI off the 8-decimal grid (profit is rounded
    to 8 decimals, so the exact close rate for the ROI already exits) is not skipped."""
    exit_settings(minimal_roi={0: 0.5}, stoploss=-0.05, use_exit_signal=False)
    rows = flat_rows(30)
    probe = make_trade(rows, stoploss=-0.05, short=True, leverage=2.0)
    rows[20][2] = probe.stop_loss
    assert compare(backtesting, rows, stoploss=-0.05, short=True, leverage=2.0)[0] == 20
    for short in (False, True):
        roi = 0.012345678912
        exit_settings(minimal_roi={0: roi}, stoploss=-0.05, use_exit_signal=False)
        rows = flat_rows(30)
        probe = make_trade(rows, stoploss=-0.05, short=short)
        target = probe.calc_close_rate_for_roi(roi)
        fires = [p for p in (target * (1 + d * 1e-10) for d in range(-40, 41))
                 if probe.calc_profit_ratio(p) > roi]
        assert fires
        rows[25][3 if short else 2] = max(fires) if short else min(fires)
        assert compare(backtesting, rows, stoploss=-0.05, short=short)[0] == 25


def test_last_row_exit_signal_and_broken_rows_are_not_skipped(backtesting, exit_settings):
    exit_settings(minimal_roi={0: 0.5}, stoploss=-0.5, use_exit_signal=True)
    rows = flat_rows(50)
    rows[10][6] = 1.0  # exit signal
    rows[30][2] = math.nan
    rows[40][3] = 0.0
    scanner = ExitScanner.for_run(backtesting)
    pair = PairArrays.from_rows(rows)
    trade = make_trade(rows, stoploss=-0.5)
    assert scanner.quiet_until(trade, pair, 0) == 10
    assert scanner.quiet_until(trade, pair, 11) == 30
    assert scanner.quiet_until(trade, pair, 31) == 40
    assert scanner.quiet_until(trade, pair, 41) == 49  # the last row
    assert scanner.quiet_until(trade, pair, 41, limit=45) == 45
    assert scanner.quiet_until(trade, pair, 49) == 49
    trade.orders.append(_open_exit_order(trade, rows[5]))
    assert scanner.quiet_until(trade, pair, 0) == 0  # open order: no skipping


def _open_exit_order(trade: LocalTrade, candle: list):
    from freqtrade.persistence import Order

    return Order(ft_trade_id=1, ft_is_open=True, ft_pair=PAIR, order_id="x", symbol=PAIR,
                 ft_order_side="sell", side="sell", order_type="limit", status="open",
                 price=candle[1], amount=trade.amount, order_date=candle[0].to_pydatetime())


def test_funding_rows_are_not_skipped():
    scanner = ExitScanner(
        roi_keys=(), roi_values=(), stoploss=-0.5, trailing_stop=False,
        trailing_stop_positive=None, trailing_stop_positive_offset=0.0,
        trailing_only_offset_is_reached=False, use_exit_signal=False,
        funding_fee_us=8 * 3600 * 10**6)
    rows = [row(pd.Timestamp("2024-03-01 05:00", tz="UTC") + timedelta(hours=i), 1.0, 1.0, 1.0,
                1.0) for i in range(20)]
    trade = make_trade(rows, stoploss=-0.5, short=True, leverage=2.0)
    pair = PairArrays.from_rows(rows)
    assert scanner.quiet_until(trade, pair, 0) == 3  # 08:00
    assert scanner.quiet_until(trade, pair, 4) == 11  # 16:00


def test_profit_and_stop_rounding_are_monotone():
    """The proof's premise: profit and rounded stop never decrease as the rate rises."""
    rng = np.random.default_rng(5)
    for short in (False, True):
        trade = make_trade(flat_rows(2, 0.0123), stoploss=-0.05, short=short,
                           leverage=3.0 if short else 1.0, funding=1e-5 if short else 0.0)
        rates = np.sort(np.concatenate([
            0.0123 * np.exp(rng.normal(0, 0.05, 3000)),
            0.0123 + np.arange(-500, 500) * 1e-18]))
        profits = [trade.calc_profit_ratio(float(r)) for r in rates]
        steps = np.diff(profits)
        assert (steps >= 0).all() if not short else (steps <= 0).all()
    for mode, precision in ((4, 1e-5), (2, 6), (3, 4)):
        stops = [price_to_precision(float(r), precision, mode, rounding_mode=ROUND_UP)
                 for r in np.sort(0.0123 * np.exp(rng.normal(0, 0.05, 2000)))]
        assert (np.diff(stops) >= 0).all()


# -- configuration guard --------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "value", "reason"), [
    ("use_custom_stoploss", True, "custom_stoploss"),
    ("use_custom_roi", True, "custom_roi"),
    ("position_adjustment_enable", True, "adjust_trade_position"),
])
def test_unsupported_strategy_settings_are_refused(backtesting, monkeypatch, setting, value,
                                                   reason):
    monkeypatch.setattr(backtesting.strategy, setting, value)
    scanner, why = ExitScanner.build(backtesting)
    assert scanner is None and reason in why


def test_overridden_strategy_methods_and_run_modes_are_refused(backtesting, monkeypatch):
    strategy = backtesting.strategy
    kind = type(strategy)
    monkeypatch.setattr(kind, "custom_exit", lambda self, *a, **k: None, raising=False)
    assert "custom_exit" in ExitScanner.build(backtesting)[1]
    monkeypatch.setattr(strategy, "use_exit_signal", False)
    assert ExitScanner.build(backtesting)[0] is not None  # custom_exit is never called then
    monkeypatch.setattr(kind, "min_roi_reached", lambda self, *a, **k: False, raising=False)
    assert "min_roi_reached" in ExitScanner.build(backtesting)[1]
    monkeypatch.undo()
    monkeypatch.setattr(backtesting, "timeframe_detail", "1m")
    assert "timeframe-detail" in ExitScanner.build(backtesting)[1]
    monkeypatch.setattr(backtesting, "timeframe_detail", "")
    monkeypatch.setattr(backtesting, "trading_mode", TradingMode.MARGIN)
    assert "margin" in ExitScanner.build(backtesting)[1]
    monkeypatch.setattr(backtesting, "trading_mode", TradingMode.FUTURES)
    monkeypatch.setattr(backtesting, "funding_fee_timeframe_secs", 28800, raising=False)
    assert ExitScanner.build(backtesting)[0].funding_fee_us == 28800 * 10**6
    monkeypatch.setattr(strategy, "minimal_roi", {0: math.nan})
    assert "non-finite" in ExitScanner.build(backtesting)[1]
    monkeypatch.setattr(strategy, "minimal_roi", {0: "0.04"})
    assert "non-numeric" in ExitScanner.build(backtesting)[1]
    monkeypatch.setattr(strategy, "minimal_roi", {0: np.float64(0.04), 30: 0})
    assert ExitScanner.build(backtesting)[0].roi_values == (0.04, 0.0)


def test_bad_rows_get_a_clear_error():
    with pytest.raises(ValueError, match="high column"):
        PairArrays.from_rows([row(START, 1.0, "x", 1.0, 1.0)])
    with pytest.raises(ValueError, match="time zone"):
        PairArrays.from_rows([row(pd.Timestamp("2024-01-01"), 1.0, 1.0, 1.0, 1.0)])


def test_fingerprints_match_the_installed_freqtrade(backtesting, monkeypatch):
    from freqtrade_opt_plugin.optimizations.fast_loop import exit_scan

    assert len(FINGERPRINTS) >= 15
    assert fingerprint_mismatches() == []
    monkeypatch.setitem(exit_scan.FINGERPRINTS, next(iter(FINGERPRINTS)), "0" * 16)
    assert fingerprint_mismatches() == [next(iter(FINGERPRINTS))]
    monkeypatch.setattr(exit_scan, "_cached_mismatches", lambda: ("m:Backtesting.x",))
    scanner, reason = ExitScanner.build(backtesting)
    assert scanner is None and "unverified Freqtrade source (Backtesting.x)" in reason


def test_settings_changed_detects_a_mid_run_change(backtesting, exit_settings):
    exit_settings(minimal_roi={0: 0.04}, stoploss=-0.1)
    scanner = ExitScanner.for_run(backtesting)
    assert not scanner.settings_changed()
    backtesting.strategy.minimal_roi = {0: 0.03}
    assert scanner.settings_changed()
    exit_settings(minimal_roi={0: 0.04}, stoploss=-0.1, trailing_stop=True)
    assert scanner.settings_changed()
    exit_settings(minimal_roi={0: 0.04}, stoploss=-0.1, use_custom_stoploss=True)
    assert scanner.settings_changed()  # now unsupported


def test_one_minute_candles_with_minute_roi_steps(backtesting, exit_settings):
    """1m rows (UNITTEST_BTC-1m) against an ROI table stepping every few minutes: each row
    sits on a step boundary, the float duration lookup has no slack."""
    frame = pd.read_feather(DATA / "UNITTEST_BTC-1m.feather")
    rows = [row(d, o, h, lo, c, exit_=float(i % 53 == 0))
            for i, (d, o, h, lo, c) in enumerate(zip(frame["date"], frame["open"], frame["high"],
                                                      frame["low"], frame["close"], strict=True))]
    exits = skipped = 0
    for use_exit_signal in (False, True):
        exit_settings(minimal_roi={0: 0.02, 1: 0.015, 3: 0.01, 7: 0.004, 13: 0.0, 31: -0.002},
                      stoploss=-0.03, use_exit_signal=use_exit_signal)
        for short in (False, True):
            for start in range(0, len(rows) - 1, 701):
                window = rows[start:start + 120]
                exit_row, quiet = compare(backtesting, window, stoploss=-0.03, short=short,
                                          open_rate=window[0][1] * 1.0003)
                exits += exit_row is not None
                skipped += quiet
    assert exits > 40 and skipped > 200


def test_pair_arrays_hold_the_rows_values(real_rows):
    for rows in real_rows.values():
        pair = PairArrays.from_rows(rows)
        assert len(pair) == len(rows)
        stamps = [r[0].to_pydatetime().timestamp() for r in rows]
        assert (pair.timestamp_us / 1e6 == np.array(stamps)).all()
        for k in (0, len(rows) // 2, len(rows) - 1):
            assert (pair.open[k], pair.high[k], pair.low[k]) == tuple(rows[k][1:4])
            assert pair.exit_long[k] == bool(rows[k][6]) and pair.exit_short[k] == bool(rows[k][8])
    odd = [row(pd.Timestamp("2024-01-01 00:00:00.0000015", tz="UTC"), 1.0, 1.0, 1.0, 1.0)]
    assert PairArrays.from_rows(odd).timestamp_us[0] == int(
        odd[0][0].to_pydatetime(warn=False).timestamp() * 1e6)
