"""`p_value`: bit-identical to Freqtrade's `calculate_p_value` (scipy's ttest_1samp), warnings
included; delegates what it does not model; refuses an unverified scipy."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from freqtrade.data import metrics
from freqtrade.data.btanalysis import load_backtest_data
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin import lazy_imports
from freqtrade_opt_plugin.optimizations import p_value
from freqtrade_opt_plugin.registry import fingerprint


BACKTEST_RESULT = Path(__file__).resolve().parents[1] / "data" / "backtest-result.json"
ORIGINAL = getattr(metrics.calculate_p_value, "__wrapped__", metrics.calculate_p_value)


class Delegated(Exception):
    pass


def _refuse(*args, **kwargs):
    raise Delegated


OPTIMIZED = p_value.factory(ORIGINAL)
STRICT = p_value.factory(_refuse)  # raises where the replacement hands over to the original


def _outcome(func, trades, balance):
    """(bits of the float result or the exception type, warnings as (category, message))."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func(trades.copy(), balance)
            value = (type(result).__name__, struct.pack("<d", result))
        except Exception as exc:  # noqa: BLE001 - the outcome compared
            value = ("raised", type(exc).__name__)
    return value, [(w.category, str(w.message)) for w in caught]


def assert_identical(trades: pd.DataFrame, balance) -> None:
    expected = _outcome(ORIGINAL, trades, balance)
    got = _outcome(OPTIMIZED, trades, balance)
    assert got == expected, (trades["profit_abs"].tolist()[:10], balance)


def frame(values, dtype=None) -> pd.DataFrame:
    return pd.DataFrame({"profit_abs": pd.Series(values, dtype=dtype)})


MAGNITUDES = st.sampled_from([1e-300, 1e-12, 1e-6, 1e-3, 1.0, 7.3, 1e3, 1e6, 1e12, 1e150, 1e300])


@st.composite
def samples(draw) -> list[float]:
    n = draw(st.one_of(st.integers(2, 5), st.integers(6, 60), st.sampled_from([257, 1000, 4099])))
    scale = draw(MAGNITUDES)
    shape = draw(st.sampled_from(["normal", "skewed", "tied", "constant", "near", "free"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if shape == "free" and n <= 60:
        return draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64),
                             min_size=n, max_size=n))
    if shape == "normal":
        values = rng.normal(draw(st.floats(-2, 2)), 1.0, n) * scale
    elif shape == "skewed":
        values = (rng.exponential(1.0, n) - draw(st.floats(0, 3))) * scale
    elif shape == "tied":
        values = rng.choice([-1.5, 0.0, 0.25, 2.0], n) * scale
    elif shape == "constant":
        values = np.full(n, draw(st.floats(-3, 3)) * scale)
    else:  # nearly identical: scipy's catastrophic-cancellation warning
        values = scale * (1.0 + rng.integers(-3, 4, n) * np.finfo(float).eps)
    values = values.tolist()
    if draw(st.booleans()) and n > 2 and draw(st.integers(0, 9)) == 0:
        values[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return values


BALANCES = st.sampled_from([1000.0, 1000, 3.0, 0.1, 12345.678, 1e-9, -50.0])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples(), BALANCES)
@example([0.1, 0.2], 1000.0)
@example([5.0, 5.0, 5.0], 1000.0)  # std 0 -> 1.0
@example([1.0, 1.0, np.nan], 1000.0)  # std (skipping NaN) 0 -> 1.0
@example([1.0, 2.0, np.nan], 1000.0)  # NaN propagates in scipy
@example([1e308, -1e308, 1e308], 1.0)  # overflow warnings
@example([0.0, -0.0], 1000.0)
@example([1.0], 1000.0)  # fewer than two trades
@example([], 1000.0)
def test_float_samples_are_bit_identical(values, balance):
    assert_identical(frame(values, "float64"), balance)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-10**6, 10**6), min_size=0, max_size=40), st.sampled_from([1000, 7]))
def test_integer_profits_are_bit_identical(values, balance):
    assert_identical(frame(values, "int64"), balance)


@pytest.mark.parametrize("dtype", ["float32", "Float64", "object"])
def test_other_dtypes_are_identical(dtype):
    rng = np.random.default_rng(3)
    values = rng.normal(0.5, 3.0, 50)
    assert_identical(frame(values, dtype), 1000.0)


@pytest.fixture(scope="module")
def real_trades() -> list[pd.DataFrame]:
    """The trades of a real backtest: all of them, per pair, and the first ten."""
    trades = load_backtest_data(BACKTEST_RESULT)
    return [trades, trades.head(10), *(group for _, group in trades.groupby("pair"))]


def test_trades_of_real_backtests_are_computed_and_identical(real_trades):
    for trades in real_trades:
        for balance in (1000.0, 10, 333.3):
            assert_identical(trades, balance)
            expected = ORIGINAL(trades, balance)
            assert struct.pack("<d", STRICT(trades, balance)) == struct.pack("<d", expected)


def test_regular_samples_never_reach_the_original():
    rng = np.random.default_rng(11)
    for n in (2, 3, 10, 1000, 20000):
        values = rng.normal(0.01, 0.5, n)
        got = STRICT(frame(values), 1000.0)
        assert struct.pack("<d", got) == struct.pack("<d", ORIGINAL(frame(values), 1000.0))


@pytest.mark.parametrize("values", [
    [1.0, 2.0, np.nan],  # NaN
    [1.0, np.inf],  # infinite
    [1e308, -1e308, 1e308],  # numpy overflow warning in scipy's computation
    [1.0, 1.0 + 2**-52, 1.0],  # scipy's precision-loss warning
])
def test_unmodelled_samples_are_delegated(values):
    with pytest.raises(Delegated):
        STRICT(frame(values), 1000.0)
    assert_identical(frame(values), 1000.0)


def test_series_and_dataframe_inputs_as_freqtrade_passes_them():
    trades = pd.DataFrame({"pair": ["A", "B", "C"], "profit_abs": [1.5, -0.5, 2.25],
                           "profit_ratio": [0.1, -0.2, 0.3]}).set_index(pd.Index([7, 3, 9]))
    assert_identical(trades, 1000.0)
    assert_identical(trades.iloc[::2], 1000.0)


def test_missing_column_raises_like_the_original():
    trades = pd.DataFrame({"profit": [1.0, 2.0]})
    assert _outcome(OPTIMIZED, trades, 1.0) == _outcome(ORIGINAL, trades, 1.0)


def test_unverified_scipy_is_not_patched(monkeypatch):
    monkeypatch.setattr(lazy_imports, "VERIFIED_SCIPY", frozenset({"0.0.1"}))
    with pytest.raises(RuntimeError, match=r"scipy 1\.\S+ is not the verified version"):
        p_value.factory(ORIGINAL)


def test_fingerprint_matches_installed_freqtrade():
    assert fingerprint(ORIGINAL) in p_value.OPTIMIZATION.fingerprints.values()
    assert p_value.OPTIMIZATION.name == lazy_imports.NAME
    assert p_value.OPTIMIZATION.tier == lazy_imports.TIER


def test_describe_names_the_guard_and_the_import_state():
    described = p_value.describe()
    assert described["scipy"] == "verified version"
    assert "start-up" in described and "scipy.stats" in described["modules"]
