"""Exactness of the vectorized `get_tick_size_over_time` against Freqtrade's original."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import freqtrade
import freqtrade.data.btanalysis.historic_precision as target_module
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal

from freqtrade_opt_plugin.optimizations import tick_size as optimized_module
from freqtrade_opt_plugin.optimizations.tick_size import OPTIMIZATION
from freqtrade_opt_plugin.registry import fingerprint


ORIGINAL = inspect.unwrap(target_module.get_tick_size_over_time)


class Wrapped:
    """The `wrapped` the factory gets: Freqtrade's original, replaceable in a test."""

    def __init__(self, original):
        self.original = original

    def __call__(self, *args, **kwargs):
        return self.original(*args, **kwargs)


WRAPPED = Wrapped(ORIGINAL)
get_tick_size_over_time = OPTIMIZATION.factory(WRAPPED)
DATA = Path(__file__).parents[1] / "data"
FEATHERS = sorted(DATA.glob("*.feather"))
PRICES = ["open", "high", "low", "close"]


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def assert_same(candles: pd.DataFrame) -> pd.Series | None:
    """Same exception type, or the same Series and the same columns added to the input."""
    expected_frame = candles.copy(deep=True)
    actual_frame = candles.copy(deep=True)
    try:
        expected = ORIGINAL(expected_frame)
    except Exception as err:
        with pytest.raises(type(err)):
            get_tick_size_over_time(actual_frame)
        return None
    result = get_tick_size_over_time(actual_frame)
    assert_series_equal(result, expected, check_exact=True, check_freq=True)
    assert result.index.freq == expected.index.freq
    assert result.index.dtype == expected.index.dtype
    assert result.index.name == expected.index.name
    assert_frame_equal(actual_frame, expected_frame, check_exact=True)
    assert list(actual_frame.columns) == list(expected_frame.columns)
    return expected


def make_candles(values, dates=None, dtype=None) -> pd.DataFrame:
    """Every value appears in every price column (rotated), one row per value."""
    values = np.asarray(values, dtype=dtype)
    n = len(values)
    if dates is None:
        dates = pd.date_range("2024-01-30", periods=n, freq="5min", tz="UTC")
    return pd.DataFrame(
        {
            "date": dates,
            "open": values,
            "high": np.roll(values, 1),
            "low": np.roll(values, 2),
            "close": np.roll(values, 3),
            "volume": np.arange(n, dtype=np.float64),
        }
    )


@pytest.fixture
def slow_calls(monkeypatch) -> list[float]:
    """Values sent to the per-value formatting fallback."""
    calls: list[float] = []
    slow = optimized_module._fraction_digits_slow

    def counting(value: float) -> float:
        calls.append(value)
        return slow(value)

    monkeypatch.setattr(optimized_module, "_fraction_digits_slow", counting)
    return calls


def test_optimization_record_matches_installed_original():
    assert OPTIMIZATION.name == "tick_size"
    assert OPTIMIZATION.factory is optimized_module.factory and OPTIMIZATION.replacement is None
    assert OPTIMIZATION.target == (
        "freqtrade.data.btanalysis.historic_precision:get_tick_size_over_time"
    )
    assert OPTIMIZATION.fingerprints[freqtrade.__version__] == fingerprint(ORIGINAL)
    assert list(inspect.signature(get_tick_size_over_time).parameters) == list(
        inspect.signature(ORIGINAL).parameters
    )


# ---------------------------------------------------------------- real market data


@pytest.mark.parametrize("path", FEATHERS, ids=[p.name for p in FEATHERS])
def test_real_data(path, slow_calls):
    candles = pd.read_feather(path)
    assert_same(candles)
    assert slow_calls == []  # exchange prices never need the per-value formatting


@pytest.mark.parametrize("path", FEATHERS[:2], ids=[p.name for p in FEATHERS[:2]])
def test_real_data_transformed(path):
    candles = pd.read_feather(path)
    scaled = candles.copy()
    for col in PRICES:
        scaled[col] = candles[col] * 1e-4  # inexact products: many digits
    assert_same(scaled)
    summed = candles.copy()
    for col in PRICES:
        summed[col] = candles[col] + 0.1  # the 0.1 + 0.2 kind of value
    assert_same(summed)
    as_float32 = candles.astype({col: "float32" for col in PRICES})
    assert_same(as_float32)


def test_real_data_already_processed():
    """A second call on the same frame: the count columns exist and are replaced in place."""
    candles = pd.read_feather(FEATHERS[0])
    ORIGINAL(candles)
    candles["extra"] = 1
    assert_same(candles)


# ---------------------------------------------------------------- generated values

any_float = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
decimal = st.builds(lambda n, k: n / 10**k, st.integers(-(10**15), 10**15), st.integers(0, 22))
satoshi = st.one_of(
    st.integers(0, 10**10).map(lambda n: n / 1e8),
    st.integers(0, 10**10).map(lambda n: n * 1e-8),  # inexact products
)
dyadic = st.builds(
    lambda n, p: n / 2.0**p, st.integers(-(2**53), 2**53), st.integers(0, 80)
)  # exact binary values, including exact ties at the 15th significant digit
summed = st.builds(lambda a, b: a + b, decimal, decimal)
near_power = st.builds(
    lambda e, steps: (
        float(np.nextafter(10.0**e, np.inf if steps > 0 else -np.inf)) if steps else 10.0**e
    ),
    st.integers(-40, 20),
    st.integers(-1, 1),
)
fourteen_digits = st.builds(
    lambda n, e: n * 10.0**e, st.integers(10**13, 10**14), st.integers(-30, 5)
)
value = st.one_of(any_float, decimal, satoshi, dyadic, summed, near_power, fourteen_digits)


@budget(80)
@given(st.lists(value, min_size=1, max_size=40))
def test_generated_values(values):
    assert_same(make_candles(values))


@budget(50)
@given(st.lists(st.one_of(decimal, satoshi, summed), min_size=1, max_size=12), st.data())
def test_repeated_values_and_random_dates(pool, data):
    n = data.draw(st.integers(1, 120))
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    values = [pool[i] for i in picks]
    gaps = data.draw(st.lists(st.integers(0, 60 * 24 * 20), min_size=n, max_size=n))
    unit = data.draw(st.sampled_from(["s", "ms", "us", "ns"]))
    tz = data.draw(st.sampled_from(["UTC", None, "Asia/Tokyo"]))
    start = pd.Timestamp("2023-11-20 13:05")
    dates = pd.DatetimeIndex(start + pd.to_timedelta(np.cumsum(gaps), unit="min"))
    dates = dates.as_unit(unit)
    if tz is not None:
        dates = dates.tz_localize("UTC").tz_convert(tz)
    if data.draw(st.booleans()):
        dates = dates[np.random.default_rng(n).permutation(n)]  # unsorted
    assert_same(make_candles(values, dates=dates))


@budget(40)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=30))
def test_generated_float32(values):
    assert_same(make_candles(values, dtype=np.float32))


@budget(25)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
            st.tuples(st.just("float"), value),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_generated_mixed_column_dtypes(items):
    """Some price columns integer, others float."""
    ints = [v for kind, v in items if kind == "int"] or [0]
    floats = [v for kind, v in items if kind == "float"] or [0.5]
    n = max(len(ints), len(floats))
    candles = make_candles(np.resize(np.array(floats, dtype=np.float64), n))
    candles["high"] = np.resize(np.array(ints, dtype=np.int64), n)
    assert_same(candles)


@pytest.mark.parametrize(
    "kind", ["random", "tiny", "huge_range", "ticks", "sums", "dyadic", "random_walk"]
)
def test_large_arrays(kind):
    rng = np.random.default_rng(abs(hash(kind)) % 2**32)
    n = 6000
    if kind == "random":
        values = rng.random(n)
    elif kind == "tiny":
        values = rng.random(n) * 10.0 ** rng.integers(-40, -8, n)
    elif kind == "huge_range":
        values = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 20, n)
    elif kind == "ticks":
        decimals = rng.integers(0, 15, n)
        values = np.rint(rng.random(n) * 10.0 ** (decimals + 2)) / 10.0**decimals
    elif kind == "sums":
        values = np.rint(rng.random(n) * 1e6) / 1e6 + np.rint(rng.random(n) * 1e4) / 1e4
    elif kind == "dyadic":
        values = rng.integers(-(2**53), 2**53, n) / 2.0 ** rng.integers(0, 60, n)
    else:
        values = np.rint(3e4 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))) * 100) / 100
    assert_same(make_candles(values))


# ---------------------------------------------------------------- explicit edge cases

SPECIAL = [
    0.1 + 0.2,
    0.3,
    1e-8,
    12345.6789e-8,
    1e-20,
    1e-30,
    1.2345e-15,
    1e20,
    1e13,
    9999999999999.99,
    99999999999999.99,
    1234567890123.25,  # exact tie at the 15th digit: rounds half-even
    1234567890123.75,
    0.5,
    -1.5,
    -0.0,
    0.0,
    1.0,
    10.0,
    float(np.nextafter(1.0, 0.0)),
    float(np.nextafter(0.001, 0.0)),
    float(np.nextafter(0.001, 1.0)),
    5e-324,
    2.2250738585072014e-308,
    1e-310,
    float("nan"),
    float("inf"),
    float("-inf"),
    123456789012345.0,
    2.0**53,
    1 / 3,
    2 / 3,
    0.1 * 3,
]


def test_special_values():
    assert_same(make_candles(SPECIAL))
    for special in SPECIAL:
        assert_same(make_candles([special]))


def test_counts_of_19_digits_and_more_overflow_like_the_original():
    assert_same(make_candles([1e-20, 3e-21]))


def test_single_row():
    assert_same(make_candles([0.01234]))


def test_empty_frame_raises_like_the_original():
    candles = make_candles([0.5]).iloc[:0]
    with pytest.raises(AttributeError):
        ORIGINAL(candles.copy())
    assert_same(candles)


@pytest.mark.parametrize("columns", [["open"], PRICES])
def test_all_nan_columns(columns):
    candles = make_candles([0.5, 0.25, 1.0])
    for col in columns:
        candles[col] = np.nan
    assert_same(candles)


@pytest.mark.parametrize(
    "dtype", ["int64", "int32", "uint64", "uint8", "bool", "float16", "float32"]
)
def test_price_dtypes(dtype):
    candles = make_candles([1, 0, 3, 2, 1, 1])
    candles[PRICES] = candles[PRICES].astype(dtype)
    assert_same(candles)
    mixed = make_candles([0.5, 0.25, 1.0, 7.0])
    mixed["low"] = mixed["low"].astype(dtype)
    assert_same(mixed)


def test_nullable_and_object_prices_are_left_to_the_original():
    candles = make_candles([0.5, 0.25, 1.0])
    candles["open"] = candles["open"].astype("Float64")
    assert_same(candles)
    candles = make_candles([0.5, 0.25, 1.0])
    candles["close"] = candles["close"].astype(object)
    assert_same(candles)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", ["UTC", None, "America/New_York"])
def test_date_units_and_time_zones(unit, tz):
    dates = pd.date_range("2023-12-30 22:00", periods=3000, freq="1h", tz="UTC").as_unit(unit)
    dates = dates.tz_localize(None) if tz is None else dates.tz_convert(tz)
    rng = np.random.default_rng(1)
    assert_same(make_candles(np.rint(rng.random(3000) * 1e7) / 1e7, dates=dates))


@pytest.mark.parametrize("tz", ["UTC", None])
@pytest.mark.parametrize("unit", ["s", "ns"])
def test_month_edges_gaps_duplicates_and_dates_before_1970(tz, unit):
    dates = pd.DatetimeIndex(
        [
            "1969-11-30 23:55",
            "1969-12-01 00:00",
            "1969-12-01 00:00",
            "1970-03-15 12:00",
            "1970-03-31 23:59:59",
            "1970-04-01 00:00",
            "2024-02-29 23:55",
            "2024-02-29 23:55",
        ]
    ).as_unit(unit)
    dates = dates if tz is None else dates.tz_localize(tz)
    values = [0.5, 0.25, np.nan, 0.125, 1e-9, 3.0, 0.1 + 0.2, 7e-5]
    assert_same(make_candles(values, dates=dates))
    assert_same(make_candles([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], dates=dates))
    assert_same(make_candles([0.5, 0.25, 0.2, 0.125, 1e-9, 3.5, 0.1 + 0.2, 7e-5], dates=dates))


def test_nat_dates():
    candles = make_candles([0.5, 0.25, 0.125, 0.1])
    candles.loc[2, "date"] = pd.NaT
    assert_same(candles)


def test_missing_date_column_raises_like_the_original():
    candles = make_candles([0.5, 0.25]).drop(columns="date")
    assert_same(candles)
    with pytest.raises(KeyError):
        get_tick_size_over_time(candles.copy())


def test_date_as_index_raises_like_the_original():
    assert_same(make_candles([0.5, 0.25]).set_index("date"))


@pytest.mark.parametrize("dates", [[1, 2], ["2024-01-01", "2024-01-02"]])
def test_non_datetime_dates_behave_like_the_original(dates):
    assert_same(make_candles([0.5, 0.25], dates=dates))


def test_missing_price_column_raises_like_the_original():
    assert_same(make_candles([0.5, 0.25]).drop(columns="low"))


def test_existing_count_columns_keep_their_position():
    candles = make_candles([0.5, 0.25, 0.125])
    candles.insert(1, "close_count", ["a", "b", "c"])
    candles.insert(0, "max_count", 1.5)
    candles["open_count"] = np.int8(3)
    assert_same(candles)


def test_duplicate_columns_are_left_to_the_original():
    candles = make_candles([0.5, 0.25, 0.125])
    candles = pd.concat([candles, candles[["volume"]]], axis=1)
    assert_same(candles)


def test_duplicate_and_custom_index():
    candles = make_candles([0.5, 0.25, 0.125, 0.3])
    candles.index = [7, 7, 3, 1]
    assert_same(candles)


def test_input_untouched_until_computed(monkeypatch):
    """A failure inside the fast path leaves the caller's frame as it was."""
    candles = make_candles([0.5, 0.25])
    before = candles.copy(deep=True)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pd.core.resample.Resampler, "max", boom)
    with pytest.raises(RuntimeError):
        get_tick_size_over_time(candles)
    assert_frame_equal(candles, before)


def test_fast_path_is_taken_for_regular_frames(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("delegated to the original")

    monkeypatch.setattr(WRAPPED, "original", fail)
    assert_same(make_candles([0.5, 0.25, float("nan")]))


def test_fallback_digits_agree_with_the_formatting():
    """The careful path and the per-value formatting agree with `format_float_positional`."""
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.random(2000) * 10.0 ** rng.integers(-45, 14, 2000),
            np.array([v for v in SPECIAL if math.isfinite(v) and v != 0]),
        ]
    )
    careful = optimized_module._fraction_digits_careful(values)
    fast = optimized_module._fraction_digits(values)
    slow = np.array([optimized_module._fraction_digits_slow(float(v)) for v in values])
    np.testing.assert_array_equal(careful, slow)
    np.testing.assert_array_equal(fast, slow)
