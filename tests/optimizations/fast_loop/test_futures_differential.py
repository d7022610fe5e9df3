"""The fast trade loop against Freqtrade's own ``Backtesting.backtest`` on futures runs.

Binance USDT-M perpetuals from the offline fixture, isolated and cross margin, leverage tiers from
Freqtrade's bundled file, generated futures candles with mark candles and 8-hourly funding
rates. Long and short trades, leverage from a ``leverage()`` callback (1x-20x), funding fees
over several funding rows, liquidations, position stacking and max_open_trades; each case is
compared on the whole result and engine state (`conftest.assert_same`).
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.optimizations.fast_loop.conftest import STRATEGY, Bench, _cut, stock_backtest
from tests.optimizations.fast_loop.test_driver_differential import (
    BASE,
    apply,
    case,
    generated,
)


FUTURES_PAIRS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT")

FUTURES_STRATEGY = '''

class FastLoopFutures(FastLoopPlain):
    """Long and short entries; leverage from the config section ``fast_loop_test``."""

    can_short = True

    def leverage(self, pair, current_time, current_rate, proposed_leverage, max_leverage,
                 entry_tag, side, **kwargs) -> float:
        return float(self._knobs().get("leverage", 1.0))


class FastLoopFuturesAdjust(FastLoopAdjust):
    """Position adjustment (every fill moves the isolated liquidation price), custom stoploss
    and order callbacks, long and short, with leverage."""

    can_short = True

    def leverage(self, pair, current_time, current_rate, proposed_leverage, max_leverage,
                 entry_tag, side, **kwargs) -> float:
        return float(self._knobs().get("leverage", 1.0))


class FastLoopFuturesCallbacks(FastLoopCallbacks):
    """bot_loop_start, confirm_trade_entry and custom_exit record what they see (futures)."""

    can_short = True

    def leverage(self, pair, current_time, current_rate, proposed_leverage, max_leverage,
                 entry_tag, side, **kwargs) -> float:
        return float(self._knobs().get("leverage", 1.0))
'''


@pytest.fixture(scope="module")
def futures_workspace(tmp_path_factory):
    """3 USDT-M perpetuals x 6 days (isolated margin); one pair starts late, one ends early and
    has a long hole."""
    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    ws = create_workspace(tmp_path_factory.mktemp("fast-loop-futures") / "ws", FUTURES_PAIRS,
                          days=6, seed=11, trading_mode="futures")
    (ws.user_data / "strategies" / "fast_loop_strategy.py").write_text(
        STRATEGY + FUTURES_STRATEGY)
    _cut(ws.data[1].path, head=150)
    _cut(ws.data[2].path, tail=90, holes=((400, 460), (900, 903)))
    config = json.loads(ws.config_path.read_text())
    assert (config["trading_mode"], config["margin_mode"]) == ("futures", "isolated")
    ws.config_path.write_text(json.dumps(config))
    install_static_markets()
    yield ws
    uninstall_static_markets()


@pytest.fixture(scope="module")
def futures(futures_workspace):
    return Bench(futures_workspace, strategy="FastLoopFutures")


@pytest.fixture(scope="module")
def fast(conversion):
    from freqtrade_opt_plugin.optimizations.fast_loop import factory

    return factory(stock_backtest())


futures_case = st.fixed_dictionaries({
    "leverage": st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0, 20.0]),
    "can_short": st.sampled_from([True, True, False]),
    "short": st.sampled_from([0.0, 0.003, 0.03, 0.2]),
    # -0.99: wider than the liquidation distance from 20x on, so some trades liquidate
    "stoploss": st.sampled_from([-0.02, -0.08, -0.3, -0.99]),
})


def apply_futures(bench: Bench, knobs: dict[str, Any]) -> None:
    """`apply` plus the futures knobs: leverage, shorts and their signal density."""
    apply(bench, knobs)
    bt = bench.bt
    bt.config["fast_loop_test"].update(leverage=knobs["leverage"], short=knobs["short"])
    bt.strategy.can_short = knobs["can_short"]
    bt._can_short = knobs["can_short"]


def check_futures(bench: Bench, fast: Any, knobs: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare both loops on one futures case; the stock run's trades."""
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    apply_futures(bench, knobs)
    plan = eligibility.decide(bench.bt)
    assert plan.eligible, plan.describe()
    # the driver's own loop runs (no fallback to Freqtrade's generator loop)
    stock, _ = bench.compare_own_loop(fast)
    trades = stock.engine["trades"]
    if not currently_in_test_context():  # an explicit test, not a generated case
        return trades
    reasons = {t["exit_reason"] for t in trades}
    event(f"trades: {'none' if not trades else '1-9' if len(trades) < 10 else '10+'}")
    event(f"liquidation: {'liquidation' in reasons}")
    event(f"shorts: {any(t['is_short'] for t in trades)}")
    event(f"funding fees: {any(t['funding_fees'] for t in trades)}")
    return trades


@generated(14)
@given(knobs=case, extra=futures_case)
def test_generated_futures_cases_match_freqtrade(futures, fast, knobs, extra):
    check_futures(futures, fast, {**knobs, **extra})


@pytest.fixture(scope="module")
def futures_adjusting(futures_workspace):
    return Bench(futures_workspace, strategy="FastLoopFuturesAdjust")


@pytest.fixture(scope="module")
def futures_callbacks(futures_workspace):
    return Bench(futures_workspace, strategy="FastLoopFuturesCallbacks")


@generated(3)
@given(knobs=case, extra=futures_case)
def test_generated_futures_cases_with_position_adjustment_match_freqtrade(
        futures_adjusting, fast, knobs, extra):
    """DCA and partial exits (each fill recomputes the liquidation price), custom stoploss."""
    if check_futures(futures_adjusting, fast, {**knobs, **extra}):
        assert futures_adjusting.bt.strategy.seen


@generated(3)
@given(knobs=case, extra=futures_case)
def test_generated_futures_cases_with_user_callbacks_match_freqtrade(
        futures_callbacks, fast, knobs, extra):
    check_futures(futures_callbacks, fast, {**knobs, **extra})
    assert futures_callbacks.bt.strategy.seen


liquidating_case = st.fixed_dictionaries({
    "leverage": st.sampled_from([20.0, 50.0]),  # liquidation 4.6 % / 1.6 % away (tier 1)
    "can_short": st.booleans(),
    "short": st.sampled_from([0.003, 0.03]),
    "stoploss": st.just(-0.99),  # wider than the liquidation distance
    "roi": st.sampled_from([{0: 10.0}, {0: 0.5, 600: 0.05}]),
    "entry": st.sampled_from([0.003, 0.03]),
    "exit": st.sampled_from([0.0, 0.01]),
})


@generated(4)
@given(knobs=case, extra=liquidating_case)
def test_generated_liquidating_cases_match_freqtrade(futures, fast, knobs, extra):
    """High leverage, a stoploss beyond the liquidation price, long-held trades."""
    check_futures(futures, fast, {**knobs, **extra})


FUTURES_BASE = {**BASE, "leverage": 5.0, "can_short": True, "short": 0.03}


def test_long_and_short_trades_with_leverage_and_funding_fees_match(futures, fast):
    trades = check_futures(futures, fast, {
        **FUTURES_BASE, "roi": {0: 10.0}, "use_exit_signal": False, "trailing_stop": False,
        "stoploss": -0.3, "entry": 0.01, "short": 0.01, "max_open_trades": 3, "protections": 0})
    assert {t["is_short"] for t in trades} == {True, False}
    assert {t["leverage"] for t in trades} == {5.0}
    # trades held over several funding rows (every 8 hours) paid or got funding fees
    long_held = [t for t in trades if t["trade_duration"] > 16 * 60]
    assert long_held and all(t["funding_fees"] != 0.0 for t in long_held)


def test_liquidations_at_high_leverage_match(futures, fast):
    trades = check_futures(futures, fast, {
        **FUTURES_BASE, "leverage": 20.0, "roi": {0: 10.0}, "use_exit_signal": False,
        "trailing_stop": False, "stoploss": -0.99, "entry": 0.01, "short": 0.01,
        "max_open_trades": 3, "protections": 0})
    assert "liquidation" in {t["exit_reason"] for t in trades}


def test_exit_scanner_runs_on_futures_and_still_matches(futures, fast):
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility
    from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import ExitScanner

    knobs = {**FUTURES_BASE, "trailing_stop": False, "use_exit_signal": False, "protections": 0,
             "leverage": 3.0}
    apply_futures(futures, knobs)
    plan = eligibility.decide(futures.bt)
    assert plan.scanner is not None and plan.scanner.funding_fee_us, plan.describe()
    assert "leverage" in plan.observed
    skipped = []
    skip = ExitScanner.skip

    def counting(self, trade, pair, start, end):
        skipped.append(end - start)
        return skip(self, trade, pair, start, end)

    with mock.patch.object(ExitScanner, "skip", counting):
        trades = check_futures(futures, fast, knobs)
    assert len(trades) > 5
    assert sum(skipped) > 100  # quiet candles of open trades were skipped


@pytest.mark.parametrize("stacking, runmode", [(True, True), (False, False), (True, False)])
def test_position_stacking_and_hyperopt_runmode_match(futures, fast, stacking, runmode):
    check_futures(futures, fast, {
        **FUTURES_BASE, "position_stacking": stacking, "backtest_runmode": runmode,
        "entry": 0.05, "short": 0.05, "max_open_trades": -1, "leverage": 10.0})


@pytest.fixture(scope="module")
def cross(futures_workspace):
    return Bench(futures_workspace, strategy="FastLoopFutures", margin_mode="cross")


@pytest.fixture(scope="module")
def cross_adjusting(futures_workspace):
    return Bench(futures_workspace, strategy="FastLoopFuturesAdjust", margin_mode="cross")


@generated(5)
@given(knobs=case, extra=futures_case)
def test_generated_cross_margin_cases_match_freqtrade(cross, fast, knobs, extra):
    """Cross margin: every fill recomputes every open trade's liquidation price (from the
    wallet); the exit scanner is off."""
    assert cross.bt.margin_mode == "cross"
    check_futures(cross, fast, {**knobs, **extra})


@generated(2)
@given(knobs=case, extra=futures_case)
def test_generated_cross_margin_cases_with_position_adjustment_match_freqtrade(
        cross_adjusting, fast, knobs, extra):
    check_futures(cross_adjusting, fast, {**knobs, **extra})


@generated(2)
@given(knobs=case, extra=liquidating_case)
def test_generated_liquidating_cross_margin_cases_match_freqtrade(cross, fast, knobs, extra):
    check_futures(cross, fast, {**knobs, **extra})


def test_cross_margin_runs_without_the_exit_scanner_and_match(cross, fast):
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    knobs = {**FUTURES_BASE, "trailing_stop": False, "use_exit_signal": False, "protections": 0,
             "leverage": 20.0, "stoploss": -0.99, "roi": {0: 10.0}, "max_open_trades": 3,
             "entry": 0.03, "short": 0.03}
    apply_futures(cross, knobs)
    plan = eligibility.decide(cross.bt)
    assert plan.eligible and plan.scanner is None and "cross margin" in plan.scanner_reason
    trades = check_futures(cross, fast, knobs)
    assert {t["is_short"] for t in trades} == {True, False}


def test_margin_trading_is_not_eligible(futures):
    from freqtrade.enums import TradingMode

    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    bt = futures.bt
    saved = bt.trading_mode
    try:
        bt.trading_mode = TradingMode.MARGIN
        plan = eligibility.decide(bt)
        assert not plan.eligible and "trading mode margin" in plan.reason
    finally:
        bt.trading_mode = saved
    assert eligibility.decide(bt).eligible
