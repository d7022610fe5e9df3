"""Exactness of the numpy `calculate_max_drawdown` against Freqtrade's original."""

from __future__ import annotations

import inspect
import math
from decimal import Decimal
from pathlib import Path

import freqtrade.data.metrics as target_module
import numpy as np
import pandas as pd
import pytest
from freqtrade.data.btanalysis import load_backtest_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from freqtrade_opt_plugin.optimizations import max_drawdown as optimized_module
from freqtrade_opt_plugin.optimizations.max_drawdown import OPTIMIZATION
from freqtrade_opt_plugin.registry import fingerprint


ORIGINAL = inspect.unwrap(target_module.calculate_max_drawdown)


class Wrapped:
    """The `wrapped` the factory gets: Freqtrade's original, replaceable in a test."""

    def __init__(self, original):
        self.original = original

    def __call__(self, *args, **kwargs):
        return self.original(*args, **kwargs)


WRAPPED = Wrapped(ORIGINAL)
calculate_max_drawdown = OPTIMIZATION.factory(WRAPPED)
BACKTEST_RESULT = Path(__file__).parents[1] / "data" / "backtest-result.json"
BASE = pd.Timestamp("2024-03-01 10:05:00")


def assert_same_value(name: str, got, expected) -> None:
    """Same type and the same value: floats bit for bit (any NaN), dates with unit and tz."""
    assert type(got) is type(expected), (name, type(got), type(expected))
    if isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(got), (name, got, expected)
        else:
            assert np.float64(got).tobytes() == np.float64(expected).tobytes(), (
                name,
                got,
                expected,
            )
    elif expected is pd.NaT:
        assert got is pd.NaT, name
    else:
        assert got == expected, (name, got, expected)
        if isinstance(expected, pd.Timestamp):
            assert got.unit == expected.unit, name
            assert str(got.tz) == str(expected.tz), name


def assert_same(trades, **kwargs):
    """Both raise the same exception (type and message) or return identical results."""
    is_frame = isinstance(trades, pd.DataFrame)
    before = trades.copy(deep=True) if is_frame else None
    try:
        expected = ORIGINAL(trades.copy(deep=True) if is_frame else trades, **kwargs)
    except Exception as err:
        with pytest.raises(type(err)) as info:
            calculate_max_drawdown(trades, **kwargs)
        assert type(info.value) is type(err)
        assert str(info.value) == str(err)
        return None
    result = calculate_max_drawdown(trades, **kwargs)
    assert type(result) is type(expected)
    for field in vars(expected):
        assert_same_value(field, getattr(result, field), getattr(expected, field))
    if before is not None:
        assert_frame_equal(trades, before)  # not mutated
    return expected


def _forbidden(*args, **kwargs):
    raise AssertionError("delegated to the original")


@pytest.fixture
def fast_path_only(monkeypatch):
    """Fail if the replacement delegates to the original (the fast path must handle it)."""
    monkeypatch.setattr(WRAPPED, "original", _forbidden)


@pytest.fixture(scope="module")
def real_trades() -> pd.DataFrame:
    return load_backtest_data(BACKTEST_RESULT)


def make_trades(offsets, values, *, unit="us", tz="UTC", step="5min") -> pd.DataFrame:
    dates = pd.DatetimeIndex(BASE + pd.to_timedelta(step) * np.asarray(offsets, dtype=np.int64))
    dates = dates.as_unit(unit)
    if tz is not None:
        dates = dates.tz_localize(tz)
    values = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(
        {
            "pair": [f"P{i % 3}/USDT" for i in range(len(values))],
            "open_date": dates - pd.Timedelta("1h"),
            "close_date": dates,
            "profit_abs": values,
            "profit_ratio": values / 100,
        }
    )


# --- registration -----------------------------------------------------------------------------


def test_optimization_record():
    assert OPTIMIZATION.name == "max_drawdown"
    assert OPTIMIZATION.target == "freqtrade.data.metrics:calculate_max_drawdown"
    assert OPTIMIZATION.factory is optimized_module.factory and OPTIMIZATION.replacement is None
    assert OPTIMIZATION.mutates_arguments is False
    assert OPTIMIZATION.propagates == (ValueError,)
    assert OPTIMIZATION.fingerprints["2026.9"] == fingerprint(ORIGINAL)
    assert set(OPTIMIZATION.fingerprints.values()) == {fingerprint(ORIGINAL)}
    # Reimplemented as well: verified against the same 2026.9 sources.
    assert fingerprint(target_module._calc_drawdown_series) == "3479ac7bb2f36ebf"
    ours = inspect.signature(calculate_max_drawdown).parameters
    theirs = inspect.signature(ORIGINAL).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def test_pandas_tie_order_probe():
    for unit in ("s", "ms", "us", "ns"):
        assert optimized_module._quicksort_matches_pandas(np.dtype(f"datetime64[{unit}]"))


# --- real backtest export ---------------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("starting_balance", [0, 0.0, 1000, 0.01, 12.5])
@pytest.mark.parametrize("value_col", ["profit_abs", "profit_ratio"])
@pytest.mark.parametrize("date_col", ["close_date", "open_date"])
def test_real_backtest_trades(
    real_trades, fast_path_only, relative, starting_balance, value_col, date_col
):
    assert_same(
        real_trades,
        date_col=date_col,
        value_col=value_col,
        starting_balance=starting_balance,
        relative=relative,
    )


def test_real_trades_exercise_ties_and_unsorted_dates(real_trades):
    dates = real_trades["close_date"]
    assert not dates.is_monotonic_increasing
    assert not dates.is_unique
    assert len(real_trades) > 16  # numpy's introsort branch, not insertion sort


@pytest.mark.parametrize("seed", range(4))
def test_real_trades_reshuffled_and_reindexed(real_trades, fast_path_only, seed):
    trades = real_trades.sample(frac=1.0, random_state=seed)  # shuffled, non-default index
    assert_same(trades, starting_balance=0.05)
    assert_same(trades, relative=True)
    naive = trades.assign(close_date=trades["close_date"].dt.tz_localize(None).dt.as_unit("ns"))
    assert_same(naive, starting_balance=0.05, value_col="profit_ratio")


def test_realistic_sizes_with_many_ties(fast_path_only):
    rng = np.random.default_rng(7)
    for size in (100, 1_000, 10_000):
        offsets = np.sort(rng.integers(0, size // 5, size))  # about five trades per candle
        trades = make_trades(offsets, np.round(rng.normal(0.5, 20, size), 8))
        for kwargs in ({}, {"starting_balance": 1000}, {"relative": True}):
            assert_same(trades, **kwargs)
            assert_same(trades.iloc[::-1], **kwargs)


# --- generated frames -------------------------------------------------------------------------

FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.1, -0.1, 1e-9, -1e-9]),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.floats(-1e-8, 1e-8, allow_nan=False, allow_infinity=False),
    st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False),
)


@st.composite
def trade_frames(draw):
    size = draw(st.integers(1, 60))
    sign = draw(st.sampled_from(["mixed", "positive", "negative", "zero"]))
    values = draw(st.lists(FLOATS, min_size=size, max_size=size))
    if sign == "positive":
        values = [abs(v) for v in values]
    elif sign == "negative":
        values = [-abs(v) for v in values]
    elif sign == "zero":
        values = [draw(st.sampled_from([0.0, -0.0])) for _ in values]
    span = draw(st.sampled_from([1, 3, size, 10 * size]))  # 1: every date equal
    offsets = draw(st.lists(st.integers(0, span), min_size=size, max_size=size))
    if draw(st.booleans()):
        offsets.sort()
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    tz = draw(st.sampled_from([None, "UTC"]))
    return make_trades(offsets, values, unit=unit, tz=tz)


BALANCES = st.one_of(
    st.sampled_from([0, 0.0, -0.0, 1, 1000, 0.001, 10.0**12]),
    st.floats(1e-6, 1e9),
    st.integers(1, 10**9),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trades=trade_frames(),
    starting_balance=BALANCES,
    relative=st.booleans(),
    value_col=st.sampled_from(["profit_abs", "profit_ratio"]),
    date_col=st.sampled_from(["close_date", "open_date"]),
)
def test_generated_frames(trades, starting_balance, relative, value_col, date_col):
    with pytest.MonkeyPatch.context() as patch:  # finite values: never delegated
        patch.setattr(WRAPPED, "original", _forbidden)
        assert_same(
            trades,
            date_col=date_col,
            value_col=value_col,
            starting_balance=starting_balance,
            relative=relative,
        )


@settings(max_examples=25, deadline=None)
@given(size=st.integers(17, 600), distinct=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_heavy_ties_keep_pandas_quicksort_order(size, distinct, seed):
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, distinct, size)
    values = rng.normal(0, 1, size) * 10.0 ** rng.integers(-8, 8, size)
    trades = make_trades(np.sort(offsets), values)
    for frame in (trades, trades.iloc[rng.permutation(size)]):
        assert_same(frame, starting_balance=100)
        assert_same(frame, relative=True)


# --- edge cases -------------------------------------------------------------------------------


def test_empty_raises_the_same_error():
    trades = make_trades([], [])
    with pytest.raises(ValueError, match="^Trade dataframe empty.$") as info:
        calculate_max_drawdown(trades)
    assert type(info.value) is ValueError
    assert_same(trades)
    assert_same(pd.DataFrame(), starting_balance=10)


def test_single_trade(fast_path_only):
    for value in (5.0, -5.0, 0.0, -0.0):
        for kwargs in ({}, {"starting_balance": 10}, {"relative": True}):
            assert_same(make_trades([0], [value]), **kwargs)


def test_signed_zeros(fast_path_only):
    # np.maximum(0, -0.0) is -0.0: the current high value keeps the sign of the original.
    for values in ([-0.0, -0.0], [-0.0, 1.0, -1.0], [0.0, -0.0, -2.0], [-0.0] * 40):
        for kwargs in ({}, {"starting_balance": -0.0}, {"starting_balance": 3}):
            expected = assert_same(make_trades(range(len(values)), values), **kwargs)
            assert expected is not None
    expected = assert_same(make_trades([0, 1], [-0.0, -0.0]))
    assert math.copysign(1.0, expected.current_high_value) == -1.0


@pytest.mark.parametrize(
    "values",
    [
        [1.0, np.nan, -2.0, 3.0],
        [np.nan, np.nan],
        [np.nan],
        [1.0, np.inf, -1.0],
        [1.0, -np.inf, 2.0],
        [np.inf, -np.inf],
        [1e308, 1e308, -1e308],  # the cumulative sum overflows
        [-1e308, -1e308, 5.0],
    ],
)
def test_non_finite_values(values):
    trades = make_trades(range(len(values)), values)
    for kwargs in ({}, {"starting_balance": 100}, {"relative": True}):
        assert_same(trades, **kwargs)
        assert_same(trades.iloc[::-1], **kwargs)


def test_other_value_dtypes():
    trades = make_trades(range(5), [3, -2, 4, -7, 1])
    for dtype in ("int64", "int32", "float32", "Float64", "object"):
        frame = trades.astype({"profit_abs": dtype})
        assert_same(frame)
        assert_same(frame, starting_balance=20, relative=True)
    assert_same(trades.astype({"profit_abs": "Float64"}).assign(profit_abs=[1, None, 2, 3, 4]))


def test_other_date_columns():
    trades = make_trades([3, 1, 2, 2, 0], [1.0, -2.0, 3.0, -4.0, 5.0])
    assert_same(trades.assign(close_date=[3, 1, 2, 2, 0]))  # integer "dates"
    assert_same(trades.assign(close_date=trades["close_date"].astype(str)))
    assert_same(trades.assign(close_date=trades["close_date"].astype(object)))
    with_nat = trades.copy()
    with_nat.loc[1, "close_date"] = pd.NaT
    assert_same(with_nat)
    assert_same(with_nat.iloc[[1]])
    tokyo = trades.assign(close_date=trades["close_date"].dt.tz_convert("Asia/Tokyo"))
    assert_same(tokyo, starting_balance=7)


def test_bad_labels_and_layouts():
    trades = make_trades([2, 0, 1], [1.0, -2.0, 3.0])
    assert_same(trades, date_col="missing")
    assert_same(trades, value_col="missing")
    assert_same(trades, date_col="profit_abs", value_col="profit_abs")
    duplicated = pd.concat([trades, trades[["profit_abs"]]], axis=1)
    assert_same(duplicated)
    duplicated_dates = pd.concat([trades, trades[["close_date"]]], axis=1)
    assert_same(duplicated_dates)
    # A column that is also an index level name: sort_values finds it ambiguous.
    assert_same(trades.set_index(trades["close_date"].rename("close_date")))
    assert_same(trades.set_index("close_date", drop=False))
    assert_same(trades.set_index("close_date"))  # only an index level: the original fails


def test_index_is_irrelevant(fast_path_only):
    trades = make_trades([5, 1, 1, 3, 0, 1], [1.0, -2.0, 3.0, -4.0, 5.0, -0.5])
    assert_same(trades.set_index(pd.Index(list("abcdef"))))
    assert_same(trades.set_index(pd.Index([7, 7, 7, 1, 1, 1])), starting_balance=3)


@pytest.mark.parametrize(
    "starting_balance",
    [
        np.float64(1000),
        np.int64(50),
        np.float32(12.5),
        10**20,
        float("nan"),
        True,
        None,
        Decimal("100"),
    ],
)
def test_starting_balance_types(starting_balance):
    trades = make_trades([3, 0, 1, 1, 2], [4.0, -3.0, 2.5, -1.0, -6.0])
    for relative in (False, True):
        assert_same(trades, starting_balance=starting_balance, relative=relative)


def test_not_a_dataframe():
    assert_same([])  # len() == 0: the same ValueError


def test_delegates_when_pandas_orders_ties_differently(monkeypatch):
    calls = []
    def counting(*args, **kwargs):
        calls.append(1)
        return ORIGINAL(*args, **kwargs)

    monkeypatch.setattr(optimized_module, "_quicksort_matches_pandas", lambda dtype: False)
    monkeypatch.setattr(WRAPPED, "original", counting)
    assert_same(make_trades([0, 1, 2], [1.0, -1.0, 2.0]))  # strictly increasing: no sort
    assert calls == []
    assert_same(make_trades([0, 1, 1], [1.0, -1.0, 2.0]))
    assert calls == [1]
    # Sizes where pandas may compute with numexpr go to the original as well.
    monkeypatch.setattr(optimized_module, "_NUMEXPR_MIN_ELEMENTS", 3)
    assert_same(make_trades([0, 1, 2], [1.0, -1.0, 2.0]))
    assert calls == [1, 1]


def test_fast_path_failure_is_not_a_valueerror(monkeypatch):
    """ValueError is propagated by the Router as the original's contract: the fast path must
    turn its own ValueErrors into another type, so the Router falls back instead."""

    def broken(*args):
        raise ValueError("bug")

    monkeypatch.setattr(optimized_module, "_compute", broken)
    with pytest.raises(RuntimeError):
        calculate_max_drawdown(make_trades([0], [1.0]))
