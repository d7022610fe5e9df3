"""Decorators: content keys, exact results, in-place column additions, tick size."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freqtrade_opt_plugin.cache import (
    analysis_cached,
    backtesting_cached,
    get_cache,
    ohlcv_cached,
    temporary_cached,
    tick_size_cached,
)
from freqtrade_opt_plugin.cache.hashing import content_hash


DATA = Path(__file__).resolve().parents[1] / "data"
CALLS: list[str] = []


@ohlcv_cached
def indicator(frame: pd.DataFrame, window: int = 3, *, scale: float = 1.0) -> pd.DataFrame:
    CALLS.append("indicator")
    return frame[["close"]].rolling(window).mean() * scale


@analysis_cached(ttl=60)
def summary(values: np.ndarray) -> dict:
    CALLS.append("summary")
    return {"mean": float(values.mean()), "n": int(values.size), "tags": ("a", "b")}


@temporary_cached(ignore=("log",))
def plus(a: int, b: int, log: object = None) -> int:
    CALLS.append("plus")
    return a + b


@backtesting_cached(mutates="frame")
def add_columns(frame: pd.DataFrame) -> int:
    CALLS.append("add_columns")
    frame["double"] = frame["close"] * 2
    frame["flag"] = frame["close"] > frame["close"].median()
    return len(frame)


@backtesting_cached(mutates="frame")
def overwrite_close(frame: pd.DataFrame) -> int:
    CALLS.append("overwrite_close")
    frame["close"] = frame["close"] + 1
    return 0


@pytest.fixture
def candles() -> pd.DataFrame:
    return pd.read_feather(DATA / "ETH_BTC-5m.feather")


@pytest.fixture(autouse=True)
def _clean(cache_dir):
    CALLS.clear()


def test_hit_returns_an_identical_fresh_copy(candles):
    first = indicator(candles, 5)
    second = indicator(candles, 5)
    assert CALLS == ["indicator"]
    assert content_hash(first) == content_hash(second)
    assert first is not second
    second.iloc[0, 0] = 123.0  # mutating a hit does not touch the cache
    assert content_hash(indicator(candles, 5)) == content_hash(first)


def test_keys_cover_arguments_defaults_and_content(candles):
    indicator(candles)
    indicator(candles, 3)  # the default, bound: same key
    indicator(candles, window=3, scale=1.0)
    assert CALLS == ["indicator"]
    indicator(candles, 4)
    indicator(candles, 3, scale=2.0)
    changed = candles.copy()
    changed.loc[5, "close"] += 1e-12  # row 6 only
    indicator(changed)
    assert CALLS == ["indicator"] * 4
    pd.testing.assert_frame_equal(indicator(changed), changed[["close"]].rolling(3).mean(),
                                  check_exact=True)


def test_plain_values_and_arrays():
    values = np.arange(10, dtype=np.float64)
    assert summary(values) == summary(values) == {"mean": 4.5, "n": 10, "tags": ("a", "b")}
    assert CALLS == ["summary"]
    summary(values.astype(np.float32))
    assert CALLS == ["summary", "summary"]


def test_ignored_arguments_and_unhashable_ones():
    class Logger:
        pass

    assert plus(1, 2, log=Logger()) == 3
    assert plus(1, 2, log=Logger()) == 3
    assert CALLS == ["plus"]

    @temporary_cached
    def uses_object(thing: object) -> int:
        CALLS.append("uses_object")
        return 1

    uses_object(Logger())
    uses_object(Logger())
    assert CALLS == ["plus", "uses_object", "uses_object"]  # not keyed: runs uncached


def test_decorated_functions_keep_their_signature():
    assert inspect.signature(indicator) == inspect.signature(indicator.__wrapped__)
    assert indicator.cache_name == "ohlcv"
    assert summary.cache_name == "analysis"


def test_in_place_column_additions_are_replayed(candles):
    first = candles.copy()
    second = candles.copy()
    assert add_columns(first) == add_columns(second) == len(candles)
    assert CALLS == ["add_columns"]
    assert content_hash(first) == content_hash(second)
    assert list(second.columns)[-2:] == ["double", "flag"]


def test_other_in_place_changes_are_not_cached(candles):
    first, second = candles.copy(), candles.copy()
    overwrite_close(first)
    overwrite_close(second)
    assert CALLS == ["overwrite_close", "overwrite_close"]
    assert content_hash(first) == content_hash(second)


def _tick_targets():
    from freqtrade.data.btanalysis import historic_precision

    original = inspect.unwrap(historic_precision.get_tick_size_over_time)
    from freqtrade_opt_plugin.optimizations.tick_size import OPTIMIZATION

    return original, OPTIMIZATION.build(original)


@pytest.mark.parametrize("name", ["ETH_BTC-5m", "XRP_ETH-5m", "UNITTEST_BTC-1m"])
def test_tick_size_cache_is_exact_and_shared_with_the_replacement(name):
    original, fast = _tick_targets()
    reference_frame = pd.read_feather(DATA / f"{name}.feather")
    reference = original(reference_frame)
    cached_original = tick_size_cached(original)
    cached_fast = tick_size_cached(fast)
    for func in (cached_original, cached_fast, cached_original):
        frame = pd.read_feather(DATA / f"{name}.feather")
        result = func(frame)
        assert content_hash(result) == content_hash(reference)
        assert content_hash(frame) == content_hash(reference_frame)  # same columns added
    status = get_cache("ohlcv").status()
    assert status["stores"] == 1 and status["hits"] == 2


def test_bypassed_cache_gives_the_same_results(configure_caches, tmp_path, candles):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    configure_caches(dir=blocker / "x")
    expected = candles[["close"]].rolling(3).mean()
    for _ in range(2):
        pd.testing.assert_frame_equal(indicator(candles), expected, check_exact=True)
    assert CALLS == ["indicator", "indicator"]
