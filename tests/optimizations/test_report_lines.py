"""Report lines: ``report_result_line`` (``_generate_result_line`` on column arrays) and
``report_pair_lines`` / ``report_tag_lines`` (Freqtrade's per-pair / per-tag metrics on the
columns they read), against Freqtrade's originals.

Compared with `equality.first_difference`: same keys in the same order, same types, floats bit for
bit. Inputs: the stored backtest result (tests/data), the result dict of a real in-process backtest
(whole ``generate_strategy_stats``, hyperopt and backtest mode), and generated trade frames.
"""

from __future__ import annotations

import functools
import inspect
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import freqtrade.data.metrics as metrics
import freqtrade.optimize.optimize_reports.optimize_reports as reports
import numpy as np
import pandas as pd
import pytest
from freqtrade.data.btanalysis import load_backtest_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin.equality import first_difference
from freqtrade_opt_plugin.optimizations import report_lines, result_line
from freqtrade_opt_plugin.registry import fingerprint


ORIGINAL_LINE = inspect.unwrap(reports._generate_result_line)
ORIGINAL_PAIRS = inspect.unwrap(reports.generate_pair_metrics)
ORIGINAL_TAGS = inspect.unwrap(reports.generate_tag_metrics)
BACKTEST_RESULT = Path(__file__).parents[1] / "data" / "backtest-result.json"
START = datetime(2024, 3, 1, tzinfo=UTC)
TAG_TYPES = ("enter_tag", "exit_reason", ["enter_tag", "exit_reason"])

PAIR_OPT, TAG_OPT = report_lines.OPTIMIZATIONS
FAST_LINE = result_line.OPTIMIZATION.factory(ORIGINAL_LINE)
FAST_PAIRS = PAIR_OPT.factory(ORIGINAL_PAIRS)
FAST_TAGS = TAG_OPT.factory(ORIGINAL_TAGS)


@pytest.fixture
def installed(monkeypatch):
    """The three replacements where Freqtrade looks them up, wrapped as a Router wraps them."""
    for name, original, fast in (("_generate_result_line", ORIGINAL_LINE, FAST_LINE),
                                 ("generate_pair_metrics", ORIGINAL_PAIRS, FAST_PAIRS),
                                 ("generate_tag_metrics", ORIGINAL_TAGS, FAST_TAGS)):
        monkeypatch.setattr(reports, name, functools.wraps(original)(fast))


@pytest.fixture
def stock(monkeypatch):
    for name, original in (("_generate_result_line", ORIGINAL_LINE),
                           ("generate_pair_metrics", ORIGINAL_PAIRS),
                           ("generate_tag_metrics", ORIGINAL_TAGS)):
        monkeypatch.setattr(reports, name, original)


def assert_same(expected, got) -> None:
    diff = first_difference(expected, got)
    assert diff is None, diff


def test_fingerprints_match_installed_freqtrade():
    import freqtrade

    version = freqtrade.__version__
    assert result_line.OPTIMIZATION.fingerprints[version] == fingerprint(ORIGINAL_LINE)
    assert PAIR_OPT.fingerprints[version] == fingerprint(ORIGINAL_PAIRS)
    assert TAG_OPT.fingerprints[version] == fingerprint(ORIGINAL_TAGS)
    for (module, name), expected in report_lines.READERS.items():
        assert fingerprint(getattr(sys.modules[module], name)) == expected, name
    assert report_lines.readers_verified()


# --- the stored backtest result ------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored_trades() -> pd.DataFrame:
    return load_backtest_data(BACKTEST_RESULT)


def _span(trades: pd.DataFrame) -> tuple[datetime, datetime]:
    return trades["open_date"].min().to_pydatetime(), trades["close_date"].max().to_pydatetime()


def test_stored_result_lines(stored_trades):
    min_date, max_date = _span(stored_trades)
    for balance in (1000, 0.05, 12.5):
        expected = ORIGINAL_LINE(stored_trades, min_date, max_date, balance, "TOTAL")
        assert result_line.fast_line(stored_trades, min_date, max_date, balance, "TOTAL")
        assert_same(expected, FAST_LINE(stored_trades, min_date, max_date, balance, "TOTAL"))


def test_stored_result_pair_and_tag_tables(stored_trades, installed):
    min_date, max_date = _span(stored_trades)
    pairs = sorted(stored_trades["pair"].unique()) + ["NOT/TRADED"]
    for skip_nan in (False, True):
        for subset in (stored_trades, stored_trades.loc[stored_trades["exit_reason"] == "roi"]):
            expected = ORIGINAL_PAIRS(pairs, "BTC", 0.05, subset, min_date, max_date, skip_nan)
            with_original_lines = _with_line(ORIGINAL_LINE, FAST_PAIRS, pairs, "BTC", 0.05,
                                             subset, min_date, max_date, skip_nan)
            assert_same(expected, with_original_lines)
            assert_same(expected, reports.generate_pair_metrics(
                pairs, "BTC", 0.05, subset, min_date, max_date, skip_nan))
            for tag_type in TAG_TYPES:
                expected = ORIGINAL_TAGS(tag_type, 0.05, subset, min_date, max_date, skip_nan)
                assert_same(expected, reports.generate_tag_metrics(
                    tag_type, 0.05, subset, min_date, max_date, skip_nan))


def _with_line(line, func, *args):
    """`func(*args)` with `line` as the module's `_generate_result_line` (Router-wrapped)."""
    saved = reports._generate_result_line
    reports._generate_result_line = (
        line if line is ORIGINAL_LINE else functools.wraps(ORIGINAL_LINE)(line))
    try:
        return func(*args)
    finally:
        reports._generate_result_line = saved


# --- a real backtest: the whole strategy statistics ----------------------------------------------

@pytest.fixture(scope="module")
def backtest_content(tmp_path_factory):
    from freqtrade.data import history
    from freqtrade.data.converter import trim_dataframes

    from freqtrade_opt_plugin.offline.workspace import create_workspace, in_process_backtesting

    workspace = create_workspace(tmp_path_factory.mktemp("lines-ws"),
                                 ("BTC/USDT", "ETH/USDT", "XRP/USDT"), days=15, seed=9)
    bt = in_process_backtesting(workspace)
    data, timerange = bt.load_bt_data()
    processed = bt.strategy.advise_all_indicators(data)
    min_date, max_date = history.get_timerange(
        trim_dataframes(processed, timerange, bt.required_startup))
    content = bt.backtest(processed=processed, start_date=min_date, end_date=max_date)
    content.update({"backtest_start_time": 1, "backtest_end_time": 2})
    assert len(content["results"]) > 20
    return list(workspace.pairs), bt.strategy.get_strategy_name(), content, min_date, max_date


@pytest.mark.parametrize("is_hyperopt", [True, False])
def test_real_backtest_strategy_stats(backtest_content, request, is_hyperopt):
    pairs, strategy, content, min_date, max_date = backtest_content
    request.getfixturevalue("stock")
    expected = reports.generate_strategy_stats(pairs, strategy, content, min_date, max_date,
                                               market_change=0.1, is_hyperopt=is_hyperopt)
    request.getfixturevalue("installed")
    got = reports.generate_strategy_stats(pairs, strategy, content, min_date, max_date,
                                          market_change=0.1, is_hyperopt=is_hyperopt)
    assert_same(expected, got)
    lines = [*got["results_per_pair"], *got["results_per_enter_tag"],
             *got["exit_reason_summary"], *got["mix_tag_stats"]]
    assert len(lines) > 8
    results = content["results"]
    assert result_line.fast_line(results, min_date, max_date, 1000, "TOTAL") is not None
    assert report_lines.slim(results, ("pair",)).shape[1] == 5  # NEEDED + pair


# --- generated trade frames ----------------------------------------------------------------------

PAIRS = ["AAA/USDT", "BBB/USDT", "CCC/USDT"]
finite = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)
profit_values = st.one_of(finite, st.sampled_from([0.0, -0.0, 1e-12, -1e-12, 3.5, -3.5]))


@st.composite
def trade_frames(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    profits = draw(st.lists(profit_values, min_size=n, max_size=n))
    mode = draw(st.sampled_from(["mixed", "all_losses", "all_wins", "zeros"]))
    if mode == "all_losses":
        profits = [-abs(p) - 0.01 for p in profits]
    elif mode == "all_wins":
        profits = [abs(p) + 0.01 for p in profits]
    elif mode == "zeros":
        profits = [0.0] * n
    minutes = draw(st.lists(st.integers(min_value=0, max_value=3000), min_size=n, max_size=n))
    tags = draw(st.lists(st.sampled_from([None, "a", "b", "long tag", ""]), min_size=n,
                         max_size=n))
    reasons = draw(st.lists(st.sampled_from(["roi", "stop_loss", "exit_signal", "force_exit"]),
                            min_size=n, max_size=n))
    pairs = draw(st.lists(st.sampled_from(PAIRS), min_size=n, max_size=n))
    close = [START + timedelta(minutes=5 * m) for m in minutes]
    duration = draw(st.sampled_from(["int64", "float64"]))
    frame = pd.DataFrame({
        "pair": pd.Series(pairs, dtype="str"),
        "enter_tag": pd.Series(tags, dtype=draw(st.sampled_from(["str", "object"]))),
        "exit_reason": pd.Series(reasons, dtype="str"),
        "open_date": pd.Series(
            [c - timedelta(minutes=m) for c, m in zip(close, minutes, strict=True)],
            dtype="datetime64[us, UTC]"),
        "close_date": pd.Series(close, dtype="datetime64[us, UTC]"),
        "profit_abs": pd.Series(profits, dtype="float64"),
        "profit_ratio": pd.Series([p / 100 for p in profits], dtype="float64"),
        "trade_duration": pd.Series(minutes, dtype=duration),
        "is_short": pd.Series([False] * n, dtype="bool"),
        "orders": pd.Series([[{"cost": 1.0}]] * n, dtype="object"),
    })
    if n and draw(st.booleans()):
        frame.index = pd.Index(draw(st.permutations(range(100, 100 + n))))
    return frame


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=trade_frames(), balance=st.sampled_from([1000, 1000.0, 0.05, 7]),
       days=st.sampled_from([0, 1, 3, 400]))
def test_generated_lines(frame, balance, days):
    min_date = START
    max_date = START + timedelta(days=days)
    got = result_line.fast_line(frame, min_date, max_date, balance, "TOTAL")
    assert got is not None
    assert_same(ORIGINAL_LINE(frame, min_date, max_date, balance, "TOTAL"), got)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=trade_frames(), balance=st.sampled_from([1000, 0.05]),
       days=st.sampled_from([0, 3]), skip_nan=st.booleans())
def test_generated_tables(frame, balance, days, skip_nan):
    min_date = START
    max_date = START + timedelta(days=days)
    expected = ORIGINAL_PAIRS(PAIRS, "USDT", balance, frame, min_date, max_date, skip_nan)
    assert_same(expected, _with_line(FAST_LINE, FAST_PAIRS, PAIRS, "USDT", balance, frame,
                                     min_date, max_date, skip_nan))
    for tag_type in TAG_TYPES:
        expected = ORIGINAL_TAGS(tag_type, balance, frame, min_date, max_date, skip_nan)
        got = _with_line(FAST_LINE, FAST_TAGS, tag_type, balance, frame, min_date, max_date,
                         skip_nan)
        assert_same(expected, got)


def test_edge_cases_take_the_fast_path():
    """One trade, all losses, equal dates, a zero drawdown: computed on arrays, not delegated."""
    frame = pd.DataFrame({
        "close_date": pd.Series([START] * 3, dtype="datetime64[us, UTC]"),
        "profit_abs": [-1.0, -2.0, -0.5], "profit_ratio": [-0.01, -0.02, -0.005],
        "trade_duration": [5, 10, 15],
    })
    for rows in (frame.iloc[:1], frame, frame.iloc[:0]):
        for max_date in (START, START + timedelta(days=2)):
            line = result_line.fast_line(rows, START, max_date, 100, "x")
            assert line is not None
            assert_same(ORIGINAL_LINE(rows, START, max_date, 100, "x"), line)


def test_inputs_outside_the_model_are_delegated():
    base = pd.DataFrame({
        "close_date": pd.Series([START, START + timedelta(hours=1)], dtype="datetime64[us, UTC]"),
        "profit_abs": [1.0, -2.0], "profit_ratio": [0.01, -0.02], "trade_duration": [5, 10],
    })
    nan = base.assign(profit_abs=[np.nan, 1.0])
    inf = base.assign(profit_ratio=[np.inf, 1.0])
    nullable = base.assign(profit_abs=pd.array([1.0, -2.0], dtype="Float64"))
    duplicated = pd.concat([base, base[["profit_abs"]]], axis=1)
    for frame in (nan, inf, nullable, duplicated):
        assert result_line.fast_line(frame, START, START + timedelta(days=1), 10, "x") is None
    assert result_line.fast_line(base, START, START + timedelta(days=1), "10", "x") is None
    assert result_line.fast_line(base, None, START, 10, "x") is None
    # NaN and nullable frames still get the original's lines through the replacement
    for frame in (nan, nullable):
        expected = ORIGINAL_LINE(frame, START, START + timedelta(days=1), 10, "x")
        assert_same(expected, FAST_LINE(frame, START, START + timedelta(days=1), 10, "x"))
    # a missing column: the original's own error
    with pytest.raises(KeyError):
        FAST_LINE(base.drop(columns="trade_duration"), START, START, 10, "x")
    assert report_lines.slim(duplicated, ("pair",)) is None
    assert report_lines.slim(base.rename(columns={"profit_abs": 1}), ("pair",)) is None


def test_a_patched_metric_sends_every_call_to_the_original(monkeypatch, stored_trades):
    """A third-party replacement of a function a line calls may read any column: no fast path,
    no narrowed frame."""
    seen_columns = []

    def sortino(trades, min_date, max_date, starting_balance):
        seen_columns.append(list(trades.columns))
        return 42.0

    monkeypatch.setattr(reports, "calculate_sortino", sortino)
    assert not report_lines.readers_verified()
    min_date, max_date = _span(stored_trades)
    line = FAST_LINE(stored_trades, min_date, max_date, 1000, "TOTAL")
    assert line["sortino"] == 42.0
    seen_columns.clear()
    FAST_PAIRS(["TRX/BTC"], "BTC", 1000, stored_trades, min_date, max_date, False)
    assert seen_columns and all(cols == list(stored_trades.columns) for cols in seen_columns)
    monkeypatch.undo()
    assert report_lines.readers_verified()


def test_different_drawdown_functions_in_the_two_modules_are_delegated(monkeypatch,
                                                                       stored_trades):
    original = reports.calculate_max_drawdown
    monkeypatch.setattr(metrics, "calculate_max_drawdown", functools.wraps(original)(
        lambda *args, **kwargs: original(*args, **kwargs)))
    min_date, max_date = _span(stored_trades)
    assert result_line.fast_line(stored_trades, min_date, max_date, 1000, "TOTAL") is None
