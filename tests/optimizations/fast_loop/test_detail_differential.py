"""The fast trade loop with ``--timeframe-detail`` against Freqtrade's own ``backtest``.

5m main candles resampled from generated 1m candles (so detail rows and main rows agree), then
1m detail data cut: main candles without any detail row (a 30-minute hole), partly covered
ones (single missing minutes, the generator's own gaps), zero-volume rows; one pair starts
late and one ends early on the main timeframe. Each case compares the whole result dict and
the engine state (`conftest.assert_same`: trades, locks, wallet captures, DataProvider slice
state, progress, what user callbacks saw).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.optimizations.fast_loop.conftest import PAIRS, STRATEGY, Bench, _cut, stock_backtest
from tests.optimizations.fast_loop.test_driver_differential import BASE, apply, case, generated
from tests.optimizations.fast_loop.test_futures_differential import (
    FUTURES_PAIRS,
    FUTURES_STRATEGY,
    apply_futures,
    futures_case,
)


@pytest.fixture(scope="module")
def detail_workspace(tmp_path_factory):
    """3 pairs x 4 days of 1m candles and the 5m candles made from them."""
    from freqtrade_opt_plugin.offline.datagen import write_resampled
    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    ws = create_workspace(tmp_path_factory.mktemp("fast-loop-detail") / "ws", PAIRS, days=4,
                          seed=17, timeframe="1m")
    (ws.user_data / "strategies" / "fast_loop_strategy.py").write_text(STRATEGY)
    main = write_resampled(ws.datadir, ws.data, "5m")
    _cut(main[1], head=100)
    _cut(main[2], tail=60)
    # detail holes: whole main candles (30 minutes), single minutes, a 3-minute run
    _cut(ws.data[0].path, holes=((2000, 2030), (3001, 3002), (3007, 3008), (4500, 4503)))
    _cut(ws.data[2].path, holes=((1500, 1530), (4100, 4101)))
    config = json.loads(ws.config_path.read_text())
    config["exchange"]["pair_whitelist"] = list(PAIRS)
    ws.config_path.write_text(json.dumps(config))
    install_static_markets()
    yield ws
    uninstall_static_markets()


@pytest.fixture(scope="module")
def detail(detail_workspace):
    bench = Bench(detail_workspace, strategy="FastLoopPlain", timeframe_detail="1m")
    assert bench.bt.detail_data and bench.bt.timeframe_detail == "1m"
    return bench


@pytest.fixture(scope="module")
def detail_callbacks(detail_workspace):
    return Bench(detail_workspace, strategy="FastLoopCallbacks", timeframe_detail="1m")


@pytest.fixture(scope="module")
def detail_adjusting(detail_workspace):
    return Bench(detail_workspace, strategy="FastLoopAdjust", timeframe_detail="1m")


@pytest.fixture(scope="module")
def fast(conversion):
    from freqtrade_opt_plugin.optimizations.fast_loop import factory

    return factory(stock_backtest())


detail_case = st.fixed_dictionaries({
    # entries on detail rows after index 0 (slot freed, lock or stake) can be dropped as late
    "ignore_expired": st.sampled_from([0, 0, 90, 200]),
    # every candle (CI time) and never (nothing to compare) are explicit tests below
    "entry": st.sampled_from([0.03, 0.2, 0.003]),
})


def check_detail(bench: Bench, fast: Any, knobs: dict[str, Any],
                 apply_knobs: Callable[[Bench, dict[str, Any]], None] = apply
                 ) -> list[dict[str, Any]]:
    """Compare both loops on one detail case (the driver's own loop, never the fallback); the
    stock run's trades."""
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    apply_knobs(bench, knobs)
    bench.bt.strategy.ignore_buying_expired_candle_after = knobs.get("ignore_expired", 0)
    plan = eligibility.decide(bench.bt)
    assert plan.eligible and "timeframe-detail 1m" in plan.reason, plan.describe()
    assert plan.scanner is None, plan.describe()
    stock, _ = bench.compare_own_loop(fast)
    trades = stock.engine["trades"]
    if currently_in_test_context():  # a generated case: what it covered
        event(f"trades: {'none' if not trades else '1-9' if len(trades) < 10 else '10+'}")
        event(f"closed on a detail row: {any(_minute(t, 'close_date') for t in trades)}")
        event(f"opened after detail index 0: {any(_minute(t, 'open_date') for t in trades)}")
    return trades


@generated(10)
@given(knobs=case, extra=detail_case)
def test_generated_detail_cases_match_freqtrade(detail, fast, knobs, extra):
    check_detail(detail, fast, {**knobs, **extra})


@generated(3)
@given(knobs=case, extra=detail_case)
def test_generated_detail_cases_on_plain_row_lists_match_freqtrade(detail, fast, conversion,
                                                                   knobs, extra):
    with conversion.lists():
        check_detail(detail, fast, {**knobs, **extra})


@generated(4)
@given(knobs=case, extra=detail_case)
def test_generated_detail_cases_with_user_callbacks_match_freqtrade(detail_callbacks, fast,
                                                                    knobs, extra):
    """bot_loop_start sees the slice indexes and date the detail steps left; entry and exit
    callbacks see the detail times and the analysed frame sliced at them."""
    check_detail(detail_callbacks, fast, {**knobs, **extra})
    assert detail_callbacks.bt.strategy.seen


@generated(2)
@given(knobs=case, extra=detail_case)
def test_generated_detail_cases_with_position_adjustment_match_freqtrade(
        detail_adjusting, fast, knobs, extra):
    if check_detail(detail_adjusting, fast, {**knobs, **extra}):
        assert detail_adjusting.bt.strategy.seen


def _minute(trade: dict[str, Any], key: str) -> int:
    return pd.Timestamp(trade[key]).minute % 5


def test_trades_open_and_close_inside_main_candles(detail, fast):
    """Exits at detail times, entries after index 0 when a slot frees up (max_open_trades 1,
    an entry signal on every candle), and re-entries of a pair whose trade closed on a detail
    row of the same candle."""
    trades = check_detail(detail, fast, {**BASE, "entry": 1.0, "exit": 0.0, "max_open_trades": 1,
                                         "roi": {0: 0.004}, "stoploss": -0.004,
                                         "protections": 0})
    assert any(_minute(t, "close_date") for t in trades)  # closed on a detail row
    assert any(_minute(t, "open_date") for t in trades)  # opened after detail index 0
    assert len(trades) > 50


def test_stacked_shortless_many_slots_match(detail, fast):
    check_detail(detail, fast, {**BASE, "entry": 0.2, "position_stacking": True,
                                "max_open_trades": -1, "protections": 2})


def test_expired_entries_on_detail_rows_match(detail, fast):
    trades = check_detail(detail, fast, {**BASE, "entry": 1.0, "max_open_trades": 1,
                                         "roi": {0: 0.004}, "stoploss": -0.004,
                                         "protections": 0, "ignore_expired": 90})
    assert trades and all(_minute(t, "open_date") in (0, 1) for t in trades)


def test_eligibility_names_detail_and_the_scanner_reason(detail):
    from freqtrade_opt_plugin.optimizations.fast_loop import eligibility

    apply(detail, {**BASE, "trailing_stop": False, "use_exit_signal": False})
    plan = eligibility.decide(detail.bt)
    assert plan.eligible and plan.scanner is None
    assert "timeframe-detail" in plan.scanner_reason
    assert "timeframe-detail 1m" in plan.describe()


def test_pairs_without_detail_data_and_runs_without_any_match(detail, fast):
    """A pair missing from ``detail_data`` keeps its main rows; with no detail data at all the
    detail indexes of every candle find nothing to visit."""
    bt = detail.bt
    saved = dict(bt.detail_data)
    knobs = {**BASE, "entry": 0.2, "max_open_trades": 2, "protections": 0}
    try:
        del bt.detail_data[PAIRS[0]]
        assert check_detail(detail, fast, knobs)
        bt.detail_data.clear()
        assert check_detail(detail, fast, knobs)
    finally:
        bt.detail_data.update(saved)


@pytest.fixture(scope="module")
def futures_detail_workspace(tmp_path_factory):
    """3 USDT-M perpetuals x 4 days: 1m futures candles (detail), 5m made from them, mark
    candles and funding rates; a 30-minute detail hole."""
    from freqtrade_opt_plugin.offline.datagen import write_resampled
    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    ws = create_workspace(tmp_path_factory.mktemp("fast-loop-detail-futures") / "ws",
                          FUTURES_PAIRS, days=4, seed=19, timeframe="1m",
                          trading_mode="futures")
    (ws.user_data / "strategies" / "fast_loop_strategy.py").write_text(
        STRATEGY + FUTURES_STRATEGY)
    main = write_resampled(ws.datadir, ws.data, "5m", trading_mode="futures")
    _cut(main[2], head=50)
    _cut(ws.data[1].path, holes=((1000, 1030), (2001, 2002)))
    install_static_markets()
    yield ws
    uninstall_static_markets()


@pytest.fixture(scope="module")
def futures_detail(futures_detail_workspace):
    return Bench(futures_detail_workspace, strategy="FastLoopFutures", timeframe_detail="1m")


@pytest.fixture(scope="module")
def cross_detail(futures_detail_workspace):
    return Bench(futures_detail_workspace, strategy="FastLoopFutures", timeframe_detail="1m",
                 margin_mode="cross")


def check_futures_detail(bench: Bench, fast: Any, knobs: dict[str, Any]) -> list[dict]:
    """`check_detail` with the futures knobs (leverage, shorts)."""
    return check_detail(bench, fast, knobs, apply_futures)


@generated(5)
@given(knobs=case, extra=futures_case, more=detail_case)
def test_generated_futures_detail_cases_match_freqtrade(futures_detail, fast, knobs, extra,
                                                        more):
    check_futures_detail(futures_detail, fast, {**knobs, **extra, **more})


@generated(3)
@given(knobs=case, extra=futures_case, more=detail_case)
def test_generated_cross_margin_detail_cases_match_freqtrade(cross_detail, fast, knobs, extra,
                                                              more):
    assert cross_detail.bt.margin_mode == "cross"
    check_futures_detail(cross_detail, fast, {**knobs, **extra, **more})


def test_futures_long_short_reversals_and_liquidations_on_detail_rows_match(futures_detail,
                                                                            fast):
    trades = check_futures_detail(futures_detail, fast, {
        **BASE, "leverage": 20.0, "can_short": True, "short": 0.05, "entry": 0.05,
        "exit": 0.05, "roi": {0: 10.0}, "stoploss": -0.99, "trailing_stop": False,
        "max_open_trades": 3, "protections": 0})
    assert {t["is_short"] for t in trades} == {True, False}
    assert "liquidation" in {t["exit_reason"] for t in trades}
    assert any(_minute(t, "close_date") for t in trades)


def _same_rows(mine: Any, theirs: Any) -> None:
    assert mine == theirs
    if theirs:
        for a, b in zip(mine, theirs, strict=True):
            assert [type(x) for x in a] == [type(x) for x in b]
            assert a[0].unit == b[0].unit and a[0].tz == b[0].tz


@pytest.mark.parametrize("unit", ["ms", "us", "ns", "s"])
def test_detail_frame_rows_are_get_detail_datas(detail, unit):
    """`DetailFrame.rows` against Freqtrade's ``get_detail_data`` on every main row of every
    pair (holes, partial candles, the data's edges) and on rows moved off the candle grid, for
    date columns of each unit."""
    from freqtrade_opt_plugin.optimizations.fast_loop.detail import DetailFrame, DetailSteps

    bt = detail.bt
    saved = dict(bt.detail_data)
    steps_tf = DetailSteps(bt, mock.Mock(names=list(PAIRS))).tf_ns
    try:
        for pair, frame in saved.items():
            frame = frame.copy()
            frame["date"] = frame["date"].dt.as_unit(unit)
            bt.detail_data[pair] = frame
            reader = DetailFrame.build(frame, steps_tf)
            assert reader is not None
            main = bt.strategy.ft_advise_signals(detail.preprocessed[pair].copy(), {"pair": pair})
            rows = main.reindex(columns=[
                "date", "open", "high", "low", "close", "enter_long", "exit_long", "enter_short",
                "exit_short", "enter_tag", "exit_tag"], fill_value=0).values.tolist()
            shifted = [[r[0] + pd.Timedelta(seconds=30), *r[1:]] for r in rows[::97]]
            for row in rows + shifted:
                mine = reader.rows(row, row[5:11])
                assert mine is not False
                _same_rows(mine, bt.get_detail_data(pair, row))
            off_grid = [rows[5][0] + pd.Timedelta(microseconds=1), *rows[5][1:]]
            assert (reader.rows(off_grid, off_grid[5:11]) is False) == (unit in ("ms", "s"))
    finally:
        bt.detail_data.clear()
        bt.detail_data.update(saved)


def test_detail_frames_of_other_layouts_use_freqtrades_function(detail):
    from freqtrade_opt_plugin.optimizations.fast_loop.detail import DetailFrame

    frame = next(iter(detail.bt.detail_data.values()))
    tf = 300 * 10**9
    assert DetailFrame.build(frame, tf) is not None
    assert DetailFrame.build(frame.astype({"open": "float32"}), tf) is None
    assert DetailFrame.build(frame[["open", "date", "high", "low", "close"]], tf) is None
    assert DetailFrame.build(frame.assign(date=frame["date"].dt.tz_localize(None)), tf) is None
    unsorted = frame.iloc[::-1].reset_index(drop=True)
    assert DetailFrame.build(unsorted, tf) is None
    with_nat = frame.copy()
    with_nat.loc[3, "date"] = pd.NaT
    assert DetailFrame.build(with_nat, tf) is None
    # a main row in another zone than the column's: Freqtrade's function decides
    reader = DetailFrame.build(frame, tf)
    row = [frame["date"].iloc[10].tz_convert("Europe/Berlin"), 1.0, 1.0, 1.0, 1.0,
           1, 0, 0, 0, None, None]
    assert reader.rows(row, row[5:11]) is False


def test_detail_rows_denser_than_the_detail_timeframe_match(detail, fast):
    """30-second rows under a declared 1m detail: ten rows per main candle, of which the
    generator's six detail indexes (T .. T + 5m, the last one at the next candle's time and, on
    the last candle, the end date) visit the first six."""
    bt = detail.bt
    saved = dict(bt.detail_data)
    try:
        for pair, frame in saved.items():
            later = frame.assign(date=frame["date"] + pd.Timedelta(seconds=30))
            bt.detail_data[pair] = pd.concat([frame, later]).sort_values(
                "date", kind="stable").reset_index(drop=True)
        first = bt.detail_data[PAIRS[0]]["date"].iloc[600].floor("5min")
        row = [first, 1.0, 1.0, 1.0, 1.0, 1, 0, 0, 0, None, None]
        assert len(bt.get_detail_data(PAIRS[0], row)) == 10
        assert check_detail(detail, fast, {**BASE, "entry": 0.2, "max_open_trades": 2,
                                           "roi": {0: 0.004}, "stoploss": -0.004,
                                           "protections": 0})
    finally:
        bt.detail_data.clear()
        bt.detail_data.update(saved)
