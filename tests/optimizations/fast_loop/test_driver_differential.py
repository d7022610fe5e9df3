"""The fast trade loop against Freqtrade's own ``Backtesting.backtest`` on the same inputs.

Every case runs the original and the replacement on deep copies of the same analysed data with
the same engine, and compares the whole result dict and every side effect a later reader can
see (trades and orders, locks, counters, wallet captures, rejected signals, DataProvider slice
state, the open-trade dict's key order, and what user callbacks observed while running).
Settings are drawn by hypothesis; ``--hypothesis-profile fast-loop-deep`` runs many more.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.optimizations.fast_loop.conftest import Bench, stock_backtest


settings.register_profile(
    "fast-loop-deep", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DEEP = settings.get_profile("fast-loop-deep")
#: CI: no shrinking (a failing case is printed as found; the deep profile shrinks).
CI_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


def _phases() -> tuple[Phase, ...]:
    return tuple(Phase) if settings.default.max_examples == DEEP.max_examples else CI_PHASES


def _examples(default: int) -> int:
    current = settings.default.max_examples
    return current if current == DEEP.max_examples else default


def generated(default: int) -> Any:
    """Hypothesis settings of a generated-case test: `default` examples (the deep profile's
    count under ``--hypothesis-profile fast-loop-deep``), no deadline, fixtures allowed."""
    return settings(max_examples=_examples(default), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow],
                    phases=_phases())


@pytest.fixture(scope="module")
def plain(workspace):
    return Bench(workspace, strategy="FastLoopPlain")


@pytest.fixture(scope="module")
def callbacks(workspace):
    return Bench(workspace, strategy="FastLoopCallbacks")


@pytest.fixture(scope="module")
def fast(conversion):
    """The fast loop; rows converted by the ohlcv_lists optimization (column rows), as at
    level standard, unless a test asks for `conversion.lists()`."""
    from freqtrade_opt_plugin.optimizations.fast_loop import factory

    return factory(stock_backtest())


ROI_TABLES = [
    {0: 0.02}, {0: 0.1, 30: 0.02, 120: 0.0}, {0: 10.0}, {0: 0.005, 10: 0.003},
    {0: 0.03, 20: -1.0},
]
PROTECTIONS = [
    [],
    [{"method": "CooldownPeriod", "stop_duration_candles": 3}],
    [{"method": "StoplossGuard", "lookback_period_candles": 60, "trade_limit": 2,
      "stop_duration_candles": 12, "only_per_pair": False},
     {"method": "LowProfitPairs", "lookback_period_candles": 60, "trade_limit": 1,
      "stop_duration_candles": 6, "required_profit": 0.0}],
]

case = st.fixed_dictionaries({
    "entry": st.sampled_from([0.0, 0.003, 0.03, 0.2, 1.0]),
    "exit": st.sampled_from([0.0, 0.01, 0.2, 1.0]),
    "seed": st.integers(0, 10_000),
    "roi": st.sampled_from(ROI_TABLES),
    "stoploss": st.sampled_from([-0.005, -0.02, -0.08, -0.5]),
    "trailing_stop": st.booleans(),
    "trailing_stop_positive": st.sampled_from([None, 0.002, 0.01]),
    "trailing_stop_positive_offset": st.sampled_from([0.0, 0.004, 0.02]),
    "trailing_only_offset_is_reached": st.booleans(),
    "max_open_trades": st.sampled_from([1, 2, 3, -1]),
    "stake_amount": st.sampled_from(["unlimited", 150]),
    "fee": st.sampled_from([0.0, 0.001, 0.0025]),
    "protections": st.sampled_from(range(len(PROTECTIONS))),
    "position_stacking": st.sampled_from([False, False, True]),
    "use_exit_signal": st.booleans(),
    "exit_profit_only": st.sampled_from([False, False, True]),
    "ignore_roi_if_entry_signal": st.booleans(),
    "export_signals": st.booleans(),
    "backtest_runmode": st.sampled_from([True, True, False]),  # False: as hyperopt (no captures)
})


def apply(bench: Bench, knobs: dict[str, Any]) -> None:
    """Set one case's settings on the bench's engine and strategy (both loops see them)."""
    bt, strategy = bench.bt, bench.bt.strategy
    config = bt.config
    config["fast_loop_test"] = {"entry": knobs["entry"], "exit": knobs["exit"],
                                "seed": knobs["seed"]}
    strategy.minimal_roi = OrderedDict(sorted(knobs["roi"].items()))
    for name in ("stoploss", "trailing_stop", "trailing_stop_positive",
                 "trailing_stop_positive_offset", "trailing_only_offset_is_reached",
                 "use_exit_signal", "exit_profit_only", "ignore_roi_if_entry_signal"):
        setattr(strategy, name, knobs[name])
        config[name] = knobs[name]
    strategy.max_open_trades = float("inf") if knobs["max_open_trades"] == -1 \
        else knobs["max_open_trades"]
    config["max_open_trades"] = strategy.max_open_trades
    config["stake_amount"] = knobs["stake_amount"]
    bt.fee = knobs["fee"]
    protections = PROTECTIONS[knobs["protections"]]
    strategy.protections = protections
    bt.enable_protections = bool(protections)
    config["enable_protections"] = bool(protections)
    bt._position_stacking = knobs["position_stacking"]
    config["position_stacking"] = knobs["position_stacking"]
    config["export"] = "signals" if knobs["export_signals"] else "none"
    bt._is_backtest_runmode = knobs["backtest_runmode"]


def check(bench: Bench, fast: Any, knobs: dict[str, Any]) -> int:
    """Compare both loops on one case; the number of trades."""
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    apply(bench, knobs)
    assert eligibility.decide(bench.bt).eligible
    stock, _ = bench.compare(fast)
    return len(stock.result["results"])


@generated(14)
@given(knobs=case)
def test_generated_cases_match_freqtrade(plain, fast, knobs):
    check(plain, fast, knobs)


@generated(5)
@given(knobs=case)
def test_generated_cases_on_plain_row_lists_match_freqtrade(plain, fast, conversion, knobs):
    """Rows converted by Freqtrade's own ``_get_ohlcv_as_lists`` (ohlcv_lists off)."""
    with conversion.lists():
        check(plain, fast, knobs)


@generated(4)
@given(knobs=case)
def test_generated_cases_with_user_callbacks_match_freqtrade(callbacks, fast, knobs):
    """bot_loop_start, confirm_trade_entry and custom_exit read the DataProvider and the open
    trades: what they saw, call by call, is part of the comparison."""
    check(callbacks, fast, knobs)
    assert callbacks.bt.strategy.seen  # bot_loop_start ran on every candle (and was compared)
    assert callbacks.bt.progress is not None  # and the progress counts it saw were compared


@pytest.fixture(scope="module")
def adjusting(workspace):
    return Bench(workspace, strategy="FastLoopAdjust")


@generated(3)
@given(knobs=case)
def test_generated_cases_with_position_adjustment_match_freqtrade(adjusting, fast, knobs):
    """adjust_trade_position (DCA, partial exits), custom_stoploss and order_filled."""
    if check(adjusting, fast, knobs):
        assert adjusting.bt.strategy.seen  # the callbacks ran (and were compared)


BASE = {
    "entry": 0.03, "exit": 0.01, "seed": 5, "roi": {0: 0.1, 30: 0.02, 120: 0.0},
    "stoploss": -0.02, "trailing_stop": True, "trailing_stop_positive": 0.002,
    "trailing_stop_positive_offset": 0.004, "trailing_only_offset_is_reached": False,
    "max_open_trades": 2, "stake_amount": "unlimited", "fee": 0.001, "protections": 1,
    "position_stacking": False, "use_exit_signal": True, "exit_profit_only": False,
    "ignore_roi_if_entry_signal": False, "export_signals": True, "backtest_runmode": True,
}


@pytest.mark.parametrize("entry, exit_", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.003, 1.0)])
def test_signal_density_extremes_match_freqtrade(plain, fast, entry, exit_):
    check(plain, fast, {**BASE, "entry": entry, "exit": exit_})


def test_every_candle_entry_with_slot_rejections_records_the_same_rejected_signals(plain, fast):
    check(plain, fast, {**BASE, "entry": 1.0, "max_open_trades": 1, "export_signals": True})
    assert plain.bt.rejected_trades > 0
    assert plain.bt.rejected_dict


def test_exit_scanner_skips_candles_and_still_matches(plain, fast, conversion):
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    knobs = {**BASE, "trailing_stop": False, "use_exit_signal": False, "protections": 0}
    apply(plain, knobs)
    plan = eligibility.decide(plain.bt)
    assert plan.scanner is not None, plan.scanner_reason
    conversion.returned.clear()
    stock, mine = plain.compare(fast)
    assert len(stock.result["results"]) > 5
    # the stock loop got row lists, the fast loop column rows
    assert conversion.returned == {"list", "ColumnRows"}


@pytest.mark.parametrize("change, reason", [
    ("dynamic_pairlist", "dynamic pairlist"),
    ("override", "Backtesting.backtest_loop is overridden"),
])
def test_ineligible_runs_use_the_original_and_match(plain, fast, change, reason):
    from freqtrade_opt_plugin.optimizations.fast_loop import DECISIONS, eligibility

    apply(plain, BASE)
    bt = plain.bt
    saved = bt.dynamic_pairlist
    try:
        if change == "dynamic_pairlist":
            bt.dynamic_pairlist = True
        else:
            bt.backtest_loop = bt.backtest_loop  # an instance attribute shadows the method
        plan = eligibility.decide(bt)
        assert not plan.eligible and reason in plan.reason
        runs = DECISIONS.runs["original"]
        plain.compare(fast)
        assert DECISIONS.runs["original"] == runs + 1
    finally:
        bt.dynamic_pairlist = saved
        bt.__dict__.pop("backtest_loop", None)


def test_exit_settings_changed_by_user_code_mid_run_match_stock(workspace, fast):
    """bot_loop_start moves ROI and stoploss every few hours, an entry callback toggles the
    trailing stop: quiet windows proven under the old settings must not be used after."""
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    bench = Bench(workspace, strategy="FastLoopShifty")
    bench.bt.config["fast_loop_test"] = {"entry": 0.03, "exit": 0.0, "seed": 7}
    plan = eligibility.decide(bench.bt)
    assert plan.eligible and plan.scanner is not None, plan.describe()
    stock, mine = bench.compare(fast)
    assert len(stock.result["results"]) > 20


def test_a_method_patched_on_the_class_at_run_time_makes_the_run_ineligible(plain, fast):
    """E.g. a test's ``mocker.patch.object(Backtesting, "validate_row", ...)``: the source on disk
    is verified, but the live binding is not Freqtrade's function."""
    from unittest import mock

    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    apply(plain, BASE)
    with mock.patch.object(Backtesting, "validate_row", autospec=True,
                           side_effect=Backtesting.validate_row):
        plan = eligibility.decide(plain.bt)
        assert not plan.eligible and "replaced at run time: Backtesting.validate_row" in plan.reason
        plain.compare(fast)
    assert eligibility.decide(plain.bt).eligible


def test_exit_scan_is_off_while_its_proof_functions_are_replaced(plain, fast):
    """A patched ``LocalTrade.calc_profit_ratio`` or an instance-level ``should_exit``: the
    scanner's proof no longer holds, the run still matches stock through exact checks."""
    from unittest import mock

    from freqtrade.persistence import LocalTrade

    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    apply(plain, BASE)
    with mock.patch.object(LocalTrade, "calc_profit_ratio", autospec=True,
                           side_effect=LocalTrade.calc_profit_ratio):
        plan = eligibility.decide(plain.bt)
        assert plan.eligible and plan.scanner is None
        assert "replaced at run time: LocalTrade.calc_profit_ratio" in plan.scanner_reason
        plain.compare(fast)
    strategy = plain.bt.strategy
    strategy.should_exit = strategy.should_exit  # an instance attribute shadows the method
    try:
        plan = eligibility.decide(plain.bt)
        assert plan.eligible and plan.scanner is None and "should_exit" in plan.scanner_reason
    finally:
        del strategy.should_exit


def test_exit_scan_is_off_for_instance_spies_and_the_trade_models_rounding(plain, fast):
    """A spy on the ``Backtesting`` instance (``mocker.spy(backtesting, "_check_trade_exit")``,
    as a test counting calls does) sees every call Freqtrade makes; a patched
    ``trade_model.price_to_precision`` (the binding ``adjust_stop_loss`` uses) voids the trailing
    proof. Both turn the scanner off; the results still match stock."""
    from unittest import mock

    import freqtrade.persistence.trade_model as trade_model

    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility
    from tests.optimizations.fast_loop.conftest import assert_same

    apply(plain, BASE)
    bt = plain.bt
    with mock.patch.object(bt, "_check_trade_exit", wraps=bt._check_trade_exit) as spy:
        plan = eligibility.decide(bt)
        assert plan.eligible and plan.scanner is None
        assert "Backtesting._check_trade_exit (on the instance)" in plan.scanner_reason
        stock = plain.run(stock_backtest())
        stock_calls, spy.call_count = spy.call_count, 0
        assert_same(stock, plain.run(fast))
        assert spy.call_count == stock_calls > 0
    with mock.patch.object(trade_model, "price_to_precision",
                           lambda price, *a, **k: price):
        plan = eligibility.decide(bt)
        assert "trade_model.price_to_precision" in plan.scanner_reason
        plain.compare(fast)
    assert eligibility.decide(bt).scanner is not None


def test_margin_trading_is_not_eligible(plain):
    """Futures are eligible (test_futures_differential.py); margin trading is not covered by a
    differential suite and runs Freqtrade's loop."""
    from freqtrade.enums import TradingMode

    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    bt = plain.bt
    saved = bt.trading_mode
    try:
        bt.trading_mode = TradingMode.MARGIN
        plan = eligibility.decide(bt)
        assert not plan.eligible and "trading mode margin" in plan.reason
    finally:
        bt.trading_mode = saved


def test_a_changed_freqtrade_function_makes_runs_ineligible(plain, monkeypatch):
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility, guard

    table = dict(guard.FINGERPRINTS)
    table["freqtrade.optimize.backtesting:Backtesting.validate_row"] = "0" * 16
    monkeypatch.setattr(guard, "FINGERPRINTS", table)
    guard.mismatches.cache_clear()
    try:
        plan = eligibility.decide(plain.bt)
        assert not plan.eligible
        assert "unverified Freqtrade release" in plan.reason and "validate_row" in plan.reason
    finally:
        monkeypatch.undo()
        guard.mismatches.cache_clear()
    assert eligibility.decide(plain.bt).eligible


def test_user_callbacks_are_listed_and_bot_loop_start_detected(plain, callbacks):
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    assert eligibility.user_callbacks(plain.bt.strategy) == ()
    assert eligibility.default_bot_loop_start(plain.bt.strategy)
    assert eligibility.user_callbacks(callbacks.bt.strategy) == (
        "confirm_trade_entry", "custom_exit")
    assert not eligibility.default_bot_loop_start(callbacks.bt.strategy)


def test_exit_scan_with_user_callbacks_applies_skips_candle_by_candle(callbacks, fast):
    """confirm_trade_entry records every open trade's max_rate/min_rate: with user callbacks in
    the loop, skipped candles are applied where Freqtrade would have applied them."""
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    knobs = {**BASE, "use_exit_signal": False, "trailing_stop": False, "max_open_trades": 3,
             "entry": 0.05}
    apply(callbacks, knobs)
    plan = eligibility.decide(callbacks.bt)
    assert plan.scanner is not None and plan.observed, plan.describe()
    stock, _ = callbacks.compare(fast)
    entries = [s for s in callbacks.bt.strategy.seen if s[0] == "entry" and s[-1]]
    assert entries  # entries were confirmed while other trades were open (and compared)


def test_unschedulable_data_runs_freqtrades_generator_exactly(plain, fast, monkeypatch):
    from freqtrade_opt_plugin.optimizations.fast_loop import driver
    from freqtrade_opt_plugin.optimizations.fast_loop.timeline import DataNotSupported

    def refuse(*args, **kwargs):
        raise DataNotSupported("test: unschedulable rows")

    used = []
    stock_loop = driver.stock_loop
    monkeypatch.setattr(driver, "build_timeline", refuse)
    monkeypatch.setattr(driver, "stock_loop", lambda *a: used.append(1) or stock_loop(*a))
    apply(plain, BASE)
    plain.compare(fast)
    assert used == [1]


def test_a_failing_fast_run_leaves_the_engine_state_it_found(plain, fast, monkeypatch):
    """What outlives reset_backtest is put back before the error reaches the Router, so its
    fallback run gives exactly Freqtrade's result (trade ids included)."""
    from freqtrade_opt_plugin.optimizations.fast_loop import driver

    def boom(*args):
        raise RuntimeError("injected after the loop")

    apply(plain, {**BASE, "entry": 1.0, "max_open_trades": 1, "export_signals": True})
    monkeypatch.setattr(driver, "_finish", boom)
    with pytest.raises(RuntimeError, match="injected"):
        plain.run(fast)
    bt = plain.bt
    assert (bt.trade_id_counter, bt.order_id_counter) == plain.id_counters
    assert bt.rejected_dict == {}
    assert bt.dataprovider._DataProvider__slice_date is None
