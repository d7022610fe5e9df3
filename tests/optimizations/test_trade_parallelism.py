"""Exactness of the vectorized `analyze_trade_parallelism` against Freqtrade's original."""

from __future__ import annotations

import inspect
from datetime import UTC
from pathlib import Path

import freqtrade.data.btanalysis.trade_parallelism as target_module
import numpy as np
import pandas as pd
import pytest
from freqtrade.data.btanalysis import load_backtest_data
from freqtrade.exchange import timeframe_to_seconds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from freqtrade_opt_plugin.optimizations import trade_parallelism as optimized_module
from freqtrade_opt_plugin.optimizations.trade_parallelism import OPTIMIZATION
from freqtrade_opt_plugin.registry import fingerprint


ORIGINAL = inspect.unwrap(target_module.analyze_trade_parallelism)
analyze_trade_parallelism = OPTIMIZATION.factory(ORIGINAL)
BACKTEST_RESULT = Path(__file__).parents[1] / "data" / "backtest-result.json"
FIXED_TIMEFRAMES = ["1m", "3m", "5m", "15m", "30m", "1h", "4h", "12h", "1d", "3d"]
ANCHORED_TIMEFRAMES = ["1w", "2w", "1M", "3M", "1y"]
pytestmark = pytest.mark.filterwarnings(
    # The original reads Series.values of tz-aware dates (deprecated in pandas 3.1).
    "ignore:Series.values returning an ndarray:DeprecationWarning"
)
BASE = pd.Timestamp("2021-03-26 21:17:00", tz="UTC")  # a Friday, off every grid


def assert_same(trades: pd.DataFrame, timeframe: str) -> pd.DataFrame | None:
    """Both functions raise the same exception type or return identical frames."""
    before = trades.copy(deep=True)
    original_input = trades.copy(deep=True)
    try:
        expected = ORIGINAL(original_input, timeframe)
    except Exception as err:
        with pytest.raises(type(err)):
            analyze_trade_parallelism(trades, timeframe)
        assert_frame_equal(trades, before)
        return None
    result = analyze_trade_parallelism(trades, timeframe)
    assert_frame_equal(result, expected, check_exact=True, check_freq=True)
    assert result.index.name == expected.index.name
    assert result.index.dtype == expected.index.dtype
    assert result.index.freq == expected.index.freq
    # Neither function touches its input (the record declares mutates_arguments=False).
    assert_frame_equal(original_input, before)
    assert_frame_equal(trades, before)
    return expected


def make_trades(opens, closes, pairs=None, **extra) -> pd.DataFrame:
    opens = pd.to_datetime(pd.Series(opens), utc=True)
    closes = pd.to_datetime(pd.Series(closes), utc=True)
    if pairs is None:
        pairs = [f"P{i % 3}/USDT" for i in range(len(opens))]
    return pd.DataFrame({"pair": pairs, "open_date": opens, "close_date": closes, **extra})


@pytest.fixture(scope="module")
def real_trades() -> pd.DataFrame:
    return load_backtest_data(BACKTEST_RESULT)


# --- registration -----------------------------------------------------------------------------


def test_optimization_record():
    assert OPTIMIZATION.name == "trade_parallelism"
    assert OPTIMIZATION.target == (
        "freqtrade.data.btanalysis.trade_parallelism:analyze_trade_parallelism"
    )
    assert OPTIMIZATION.factory is optimized_module.factory and OPTIMIZATION.replacement is None
    assert OPTIMIZATION.mutates_arguments is False
    assert OPTIMIZATION.fingerprints["2026.9"] == fingerprint(ORIGINAL)
    params = inspect.signature(analyze_trade_parallelism).parameters
    assert list(params) == list(inspect.signature(ORIGINAL).parameters) == ["trades", "timeframe"]


# --- real backtest export ---------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", FIXED_TIMEFRAMES + ANCHORED_TIMEFRAMES)
def test_real_backtest_trades(real_trades, timeframe):
    expected = assert_same(real_trades, timeframe)
    assert expected is not None
    if timeframe in ("5m", "1h"):
        assert expected["open_trades"].max() > 1  # the export does have overlapping trades


def test_one_second_candles(real_trades):
    trades = real_trades[real_trades["trade_duration"] <= 60].copy()
    trades["open_date"] = trades["open_date"] + pd.to_timedelta(np.arange(len(trades)), unit="ms")
    assert_same(trades, "1s")


def test_real_backtest_trades_shuffled_shifted_with_null_pairs(real_trades):
    rng = np.random.default_rng(7)
    trades = real_trades.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shift = pd.to_timedelta(rng.integers(0, 3_600_000, len(trades)), unit="ms")
    trades["open_date"] = trades["open_date"] + shift
    trades["close_date"] = trades["close_date"] + shift * 2
    trades.loc[::11, "pair"] = None
    for timeframe in ("1m", "5m", "1h", "1d", "1w", "1M"):
        assert_same(trades, timeframe)


# --- hypothesis -------------------------------------------------------------------------------


@st.composite
def trades_frames(draw):
    timeframe = draw(st.sampled_from(["1m", "5m", "15m", "1h", "1d", "3d"] + ANCHORED_TIMEFRAMES))
    tf_ms = timeframe_to_seconds(timeframe) * 1000
    max_candles = 6 if timeframe in ANCHORED_TIMEFRAMES else 200
    n = draw(st.integers(1, 25))
    on_grid = draw(st.booleans())
    base = BASE.floor("D") if on_grid else BASE
    rows = []
    for _ in range(n):
        if on_grid and draw(st.booleans()):
            start = draw(st.integers(0, 500)) * min(tf_ms, 3_600_000)
        else:
            start = draw(st.integers(0, 400 * 86_400_000))
        kind = draw(st.sampled_from(["zero", "short", "candles", "free", "negative"]))
        if kind == "zero":
            duration = 0
        elif kind == "short":
            duration = draw(st.integers(1, tf_ms))
        elif kind == "candles":
            duration = draw(st.integers(0, max_candles)) * tf_ms + draw(
                st.sampled_from([0, -1, 1, -60_000, 60_000])
            )
        elif kind == "free":
            duration = draw(st.integers(0, max_candles * tf_ms))
        else:
            duration = -draw(st.integers(1, 3 * tf_ms))
        pair = draw(st.sampled_from(["BTC/USDT", "ETH/USDT", "XRP/USDT", None, np.nan]))
        rows.append((pair, start, duration))
    pairs = [r[0] for r in rows]
    opens = base + pd.to_timedelta([r[1] for r in rows], unit="ms")
    closes = opens + pd.to_timedelta([r[2] for r in rows], unit="ms")
    trades = pd.DataFrame(
        {
            "pair": pairs,
            "open_date": pd.Series(opens),
            "close_date": pd.Series(closes),
            "profit_abs": np.arange(n, dtype=float),
        }
    )
    unit = draw(st.sampled_from(["ms", "us", "ns"]))
    trades["open_date"] = trades["open_date"].dt.as_unit(unit)
    trades["close_date"] = trades["close_date"].dt.as_unit(draw(st.sampled_from([unit, "ns"])))
    if draw(st.booleans()):
        for col in ("open_date", "close_date"):
            trades[col] = trades[col].dt.tz_localize(None)
    return trades, timeframe


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
@given(trades_frames())
def test_hypothesis_trades(case):
    trades, timeframe = case
    assert_same(trades, timeframe)


# --- explicit edge cases ----------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["5m", "1w", "1M"])
def test_empty_input_raises_like_original(real_trades, timeframe):
    with pytest.raises(ValueError, match="No objects to concatenate"):
        ORIGINAL(real_trades.iloc[:0], timeframe)
    with pytest.raises(ValueError, match="No objects to concatenate"):
        analyze_trade_parallelism(real_trades.iloc[:0], timeframe)


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h", "1d", "1w", "1M"])
@pytest.mark.parametrize(
    "trades",
    [
        pytest.param(make_trades([BASE], [BASE + pd.Timedelta("2h")]), id="single-off-grid"),
        pytest.param(make_trades(["2021-01-04 00:00"], ["2021-02-01 00:00"]), id="single-aligned"),
        pytest.param(
            make_trades([BASE, BASE + pd.Timedelta("1h")], [BASE, BASE + pd.Timedelta("1h")]),
            id="open-equals-close",
        ),
        pytest.param(
            make_trades(
                [BASE, BASE + pd.Timedelta("17s"), BASE + pd.Timedelta("3D")],
                [BASE + pd.Timedelta("1s"), BASE + pd.Timedelta("61s"), BASE + pd.Timedelta("3D")],
            ),
            id="shorter-than-candle",
        ),
        pytest.param(
            make_trades(
                ["2021-05-03 10:00", "2021-05-01 00:00", "2021-04-30 23:59", "2021-05-03 09:00"],
                ["2021-05-31 05:00", "2021-06-02 00:00", "2021-05-03 10:00", "2021-05-10 09:00"],
            ),
            id="unsorted-overlapping",
        ),
        pytest.param(
            make_trades([BASE, BASE], [BASE + pd.Timedelta("3h"), BASE + pd.Timedelta("3h")]),
            id="identical-trades",
        ),
        pytest.param(
            make_trades(
                [BASE, BASE + pd.Timedelta("1h"), BASE],
                [BASE + pd.Timedelta("5h"), BASE + pd.Timedelta("2h"), BASE + pd.Timedelta("9D")],
                pairs=["A/B", np.nan, None],
            ),
            id="nan-pairs",
        ),
        pytest.param(
            make_trades(
                [BASE, BASE + pd.Timedelta("1D")],
                [BASE + pd.Timedelta("40D"), BASE + pd.Timedelta("50D")],
                pairs=[None, np.nan],
            ),
            id="all-pairs-null",
        ),
        pytest.param(
            make_trades(
                [BASE + pd.Timedelta("2h"), BASE],
                [BASE, BASE + pd.Timedelta("1h")],
            ),
            id="close-before-open",
        ),
        pytest.param(
            make_trades(
                ["2021-01-01 00:00", "2021-12-31 23:00", "2020-02-29 12:00"],
                ["2022-01-01 00:00", "2022-01-01 01:00", "2020-03-02 00:00"],
            ),
            id="month-and-year-boundaries",
        ),
        pytest.param(
            make_trades(
                ["1969-12-29 06:00", "1969-12-31 23:59"],
                ["1970-01-13 00:00", "1970-01-05 00:01"],
            ),
            id="before-epoch",
        ),
    ],
)
def test_edge_cases(trades, timeframe):
    assert_same(trades, timeframe)


def test_identical_open_close_everywhere_gives_empty_frame(real_trades):
    trades = real_trades.copy()
    trades["close_date"] = trades["open_date"]
    for timeframe in ("5m", "1w", "1M"):
        expected = assert_same(trades, timeframe)
        assert expected is not None and expected.empty


def test_extra_and_reordered_columns(real_trades):
    trades = real_trades[list(reversed(real_trades.columns))].copy()
    trades["orders_copy"] = [[{"a": 1}]] * len(trades)
    trades["category"] = pd.Categorical(
        ["x", None] * (len(trades) // 2) + ["x"] * (len(trades) % 2)
    )
    trades.index = trades.index * 3 + 100
    for timeframe in ("5m", "1h", "1w"):
        assert_same(trades, timeframe)


@pytest.mark.parametrize(
    ("unit", "close_unit", "tz"),
    [
        ("s", "s", None),
        ("us", "us", None),
        ("ns", "ns", None),
        ("s", "us", None),
        ("ms", "ms", "UTC"),
        ("us", "us", UTC),
        ("ns", "ns", "UTC"),
        ("ms", "ns", "UTC"),
        ("us", "s", "UTC"),
        ("ms", "ms", "Europe/Berlin"),
        ("ns", "us", "America/New_York"),
        ("s", "s", "America/New_York"),
    ],
)
def test_units_and_time_zones(real_trades, unit, close_unit, tz):
    trades = real_trades.head(60).copy()
    trades["open_date"] = trades["open_date"].dt.floor("s").dt.as_unit(unit)
    trades["close_date"] = trades["close_date"].dt.as_unit(close_unit)
    for col in ("open_date", "close_date"):
        trades[col] = (
            trades[col].dt.tz_localize(None) if tz is None else trades[col].dt.tz_convert(tz)
        )
    for timeframe in ("5m", "1w", "1M"):
        assert_same(trades, timeframe)


def test_dst_transition_weekly_and_monthly():
    opens = ["2021-03-27 23:30", "2021-10-30 22:00", "2021-03-01 00:00"]
    closes = ["2021-04-12 01:00", "2021-11-15 00:00", "2021-11-01 00:00"]
    trades = make_trades(opens, closes)
    for col in ("open_date", "close_date"):
        trades[col] = trades[col].dt.tz_convert("Europe/Berlin")
    for timeframe in ("1h", "1d", "1w", "1M"):
        assert_same(trades, timeframe)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t.assign(open_date=t["open_date"].where(t.index != 2)), id="nat"),
        pytest.param(lambda t: t.drop(columns="pair"), id="no-pair"),
        pytest.param(lambda t: t.assign(date=t["open_date"]), id="date-column"),
        pytest.param(
            lambda t: t.assign(open_date=t["open_date"].astype(str)), id="string-open-date"
        ),
        pytest.param(
            lambda t: t.assign(close_date=t["close_date"].dt.tz_localize(None)), id="mixed-tz"
        ),
        pytest.param(
            lambda t: t.assign(close_date=t["close_date"].dt.tz_convert("Asia/Tokyo")),
            id="different-tz",
        ),
        pytest.param(lambda t: t.assign(pair=t["pair"].astype("category")), id="categorical-pair"),
        pytest.param(lambda t: t.assign(pair=np.nan), id="float-pair"),
    ],
)
@pytest.mark.parametrize("timeframe", ["5m", "1w"])
def test_unusual_inputs_match_or_raise_alike(real_trades, mutate, timeframe):
    assert_same(mutate(real_trades.head(40).copy()), timeframe)


@pytest.mark.parametrize("timeframe", ["2y", "7x"])
def test_unsupported_timeframe_raises_alike(real_trades, timeframe):
    assert_same(real_trades.head(5), timeframe)


def test_delegation_goes_to_wrapped_never_to_the_targets_binding(monkeypatch, real_trades):
    """Inputs outside the fast model go to `wrapped` once; the target is never looked up."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        return ORIGINAL(*args, **kwargs)

    def trap(*args, **kwargs):
        raise AssertionError("the target's binding was looked up")

    monkeypatch.setattr(target_module, "analyze_trade_parallelism", trap)
    optimized = OPTIMIZATION.factory(wrapped)
    trades = real_trades.head(10).copy()
    trades["open_date"] = trades["open_date"].astype(str)  # an input that is delegated
    assert_frame_equal(optimized(trades, "5m"), ORIGINAL(trades, "5m"))
    assert calls == [1]
    assert_frame_equal(optimized(real_trades, "5m"), ORIGINAL(real_trades, "5m"))
    assert calls == [1]  # a supported input: the fast path, no delegation
