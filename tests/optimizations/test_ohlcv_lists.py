"""Exactness of `ohlcv_as_lists` against Freqtrade's own `Backtesting._get_ohlcv_as_lists`.

Both run on independent deep copies of the same inputs, with a real strategy loaded by
StrategyResolver and an offline Backtesting (built without an exchange). Compared: the returned
rows cell by cell (type, repr, Timestamp unit/tz, NaN-aware), `processed` afterwards, the
dataprovider cache, progress updates, the frames passed to `ft_advise_signals`, and exceptions.
"""

from __future__ import annotations

import copy
import gc
import inspect
import math
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from freqtrade.configuration import TimeRange
from freqtrade.data.dataprovider import DataProvider
from freqtrade.enums import CandleType
from freqtrade.exceptions import DependencyException
from freqtrade.optimize import backtesting as bt_module
from freqtrade.optimize.backtesting import Backtesting
from freqtrade.resolvers import StrategyResolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin.optimizations import column_rows, ohlcv_lists
from freqtrade_opt_plugin.optimizations.ohlcv_lists import OPTIMIZATION, _get_ohlcv_as_lists
from freqtrade_opt_plugin.registry import fingerprint


ORIGINAL: Callable = inspect.unwrap(Backtesting._get_ohlcv_as_lists)
OPTIMIZED: Callable = _get_ohlcv_as_lists


def as_columns(bt, processed) -> dict:
    """The conversion the fast loop asks for (`column_rows.ColumnRows`), read back row by row."""
    with column_rows.wanted():
        data = OPTIMIZED(bt, processed)
    assert not column_rows.take_wish(), "the wish is used up by the conversion"
    for rows in data.values():
        if isinstance(rows, column_rows.ColumnRows) and len(rows):
            assert rows[-1] is rows[len(rows) - 1], "a row index gives the same list object"
            assert rows[1:] == [rows[i] for i in range(1, len(rows))]
    return {pair: list(rows) for pair, rows in data.items()}
DATA = Path(__file__).resolve().parents[1] / "data"
SIGNALS = ["enter_long", "exit_long", "enter_short", "exit_short"]
TAGS = ["enter_tag", "exit_tag"]

STRATEGY_SOURCE = """
import talib.abstract as ta
from pandas import DataFrame

from freqtrade.strategy import IStrategy


class OhlcvListsTestStrategy(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {"0": 0.1}
    stoploss = -0.1
    startup_candle_count = 30
    signal_hook = None  # tests set a callable(dataframe, metadata) -> dataframe

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        dataframe["sma_fast"] = ta.SMA(dataframe, timeperiod=10)
        dataframe["sma_slow"] = ta.SMA(dataframe, timeperiod=30)
        dataframe["ema"] = ta.EMA(dataframe, timeperiod=20)
        macd = ta.MACD(dataframe)
        dataframe["macd"] = macd["macd"]
        dataframe["macdsignal"] = macd["macdsignal"]
        bands = ta.BBANDS(dataframe, timeperiod=20)
        dataframe["bb_upper"] = bands["upperband"]
        dataframe["bb_lower"] = bands["lowerband"]
        dataframe["adx"] = ta.ADX(dataframe)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        if self.signal_hook is not None:
            return dataframe
        dataframe.loc[
            (dataframe["rsi"] < 35) & (dataframe["volume"] > 0), ["enter_long", "enter_tag"]
        ] = (1, "rsi_low")
        dataframe.loc[dataframe["sma_fast"] > dataframe["sma_slow"] * 1.01, "enter_tag"] = "cross"
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        if self.signal_hook is not None:
            return self.signal_hook(dataframe, metadata)
        dataframe.loc[dataframe["rsi"] > 65, ["exit_long", "exit_tag"]] = (1, "rsi_high")
        return dataframe
"""


# ---------------------------------------------------------------------------------------------
# offline Backtesting, strategy, runner


@pytest.fixture(scope="module")
def strategy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ohlcv_lists_strategy")
    (folder / "ohlcv_lists_test_strategy.py").write_text(STRATEGY_SOURCE)
    config = {
        "strategy": "OhlcvListsTestStrategy",
        "strategy_path": str(folder),
        "user_data_dir": folder,
        "stake_currency": "BTC",
        "stake_amount": 0.001,
        "dry_run": True,
        "dry_run_wallet": 1,
        "max_open_trades": 1,
        "timeframe": "5m",
        "trading_mode": "spot",
        "margin_mode": "",
        "candle_type_def": CandleType.SPOT,
        "exchange": {"name": "binance", "pair_whitelist": []},
        "runmode": "backtest",
    }
    loaded = StrategyResolver.load_strategy(config)
    yield loaded
    loaded.signal_hook = None


class RecordingProgress:
    """Stands in for Freqtrade's rich progress: records every update."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def update(self, task, **kwargs) -> None:
        self.calls.append((task, sorted((key, str(value)) for key, value in kwargs.items())))


def make_backtesting(strategy, timerange: TimeRange, startup: int, abort: bool = False):
    """A Backtesting with exactly the attributes the method touches (no exchange, no network)."""
    bt = Backtesting.__new__(Backtesting)
    bt.config = strategy.config
    bt.strategy = strategy
    bt.dataprovider = DataProvider(strategy.config, None)
    strategy.dp = bt.dataprovider
    bt.timeframe = strategy.config["timeframe"]
    bt.timerange = timerange
    bt.required_startup = startup
    bt.progress = RecordingProgress()
    bt._progress_task_overall = "overall"
    bt._progress_task = "detail"
    bt.abort = abort
    return bt


def run(func, strategy, processed, timerange, startup, hook=None, abort=False) -> dict:
    """Call `func` on a deep copy of `processed`; return everything it produced or changed."""
    processed = copy.deepcopy(processed)
    bt = make_backtesting(strategy, timerange, startup, abort)
    advised: list[tuple] = []
    real_advise = type(strategy).ft_advise_signals

    def recording_advise(dataframe, metadata):
        advised.append((copy.deepcopy(metadata), dataframe.copy(deep=True)))
        return real_advise(strategy, dataframe, metadata)

    strategy.signal_hook = hook
    strategy.ft_advise_signals = recording_advise
    gc_enabled = gc.isenabled()
    outcome: dict = {"error": None, "result": None}
    try:
        outcome["result"] = func(bt, processed)
    except Exception as exc:  # compared with the other run's
        outcome["error"] = exc
    finally:
        del strategy.ft_advise_signals
        strategy.signal_hook = None
    assert gc.isenabled() is gc_enabled, "the GC state was not restored"
    outcome["processed"] = processed
    outcome["cache"] = {
        key: frame for key, (frame, _) in bt.dataprovider._DataProvider__cached_pairs.items()
    }
    outcome["progress"] = bt.progress.calls
    outcome["advised"] = advised
    outcome["abort"] = bt.abort
    return outcome


def assert_same_cell(a, b, where: str) -> None:
    assert type(a) is type(b), f"{where}: {type(a).__name__} {a!r} vs {type(b).__name__} {b!r}"
    assert repr(a) == repr(b), f"{where}: {a!r} vs {b!r}"
    if isinstance(a, pd.Timestamp):
        assert a.unit == b.unit and a.fold == b.fold, where
        assert type(a.tzinfo) is type(b.tzinfo) and a.tzinfo == b.tzinfo, where
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    elif a is not b:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_rows(expected: dict, got: dict) -> None:
    assert type(got) is dict and list(got) == list(expected)
    for pair, rows in expected.items():
        other = got[pair]
        assert type(other) is list and len(other) == len(rows), pair
        for i, (row, row2) in enumerate(zip(rows, other, strict=True)):
            assert type(row2) is list and len(row2) == len(row), f"{pair} row {i}"
            for j, (a, b) in enumerate(zip(row, row2, strict=True)):
                assert_same_cell(a, b, f"{pair} row {i} col {bt_module.HEADERS[j]}")


def assert_same_frames(expected: dict, got: dict) -> None:
    assert list(expected) == list(got)
    for key, frame in expected.items():
        pd.testing.assert_frame_equal(frame, got[key], check_exact=True, check_flags=True)
        assert frame.attrs == got[key].attrs


def assert_equivalent(
    strategy, processed, timerange=None, startup=0, hook=None, abort=False, raises=False
):
    """Run both on copies of `processed` and compare everything (the optimized conversion both as
    row lists and as column rows). `raises`: whether the original must raise (None: either way,
    for generated inputs)."""
    timerange = timerange or TimeRange(None, None, 0, 0)
    expected = run(ORIGINAL, strategy, processed, timerange, startup, hook, abort)
    got = run(OPTIMIZED, strategy, processed, timerange, startup, hook, abort)
    columns = run(as_columns, strategy, processed, timerange, startup, hook, abort)
    _assert_same_outcome(expected, columns, raises)
    _assert_same_outcome(expected, got, raises)
    return expected, got


def _assert_same_outcome(expected: dict, got: dict, raises: bool | None) -> None:
    if raises is not None:
        assert (expected["error"] is not None) is raises, repr(expected["error"])
    if expected["error"] is not None:
        assert type(got["error"]) is type(expected["error"]), got["error"]
        assert str(got["error"]) == str(expected["error"])
    else:
        assert got["error"] is None, repr(got["error"])
        assert_same_rows(expected["result"], got["result"])
    assert_same_frames(expected["processed"], got["processed"])
    assert_same_frames(expected["cache"], got["cache"])
    assert got["progress"] == expected["progress"]
    assert got["abort"] == expected["abort"]
    assert [meta for meta, _ in got["advised"]] == [meta for meta, _ in expected["advised"]]
    for (_, frame), (_, frame2) in zip(expected["advised"], got["advised"], strict=True):
        pd.testing.assert_frame_equal(frame, frame2, check_exact=True)


def load(name: str) -> pd.DataFrame:
    return pd.read_feather(DATA / f"{name}.feather")


# ---------------------------------------------------------------------------------------------
# the record and the real data


def test_original_is_freqtrades_and_verified():
    assert ORIGINAL is not OPTIMIZED
    assert ORIGINAL.__module__ == "freqtrade.optimize.backtesting"
    assert fingerprint(ORIGINAL) in OPTIMIZATION.fingerprints.values()
    assert OPTIMIZATION.target == "freqtrade.optimize.backtesting:Backtesting._get_ohlcv_as_lists"
    assert OPTIMIZATION.replacement is OPTIMIZED
    assert DependencyException in OPTIMIZATION.propagates


def test_real_data_with_indicators_and_startup(strategy):
    pairs = {"ETH/BTC": "ETH_BTC-5m", "LTC/BTC": "LTC_BTC-5m", "XRP/ETH": "XRP_ETH-5m"}
    processed = strategy.advise_all_indicators({pair: load(name) for pair, name in pairs.items()})
    expected, got = assert_equivalent(strategy, processed, startup=30)
    rows = expected["result"]["ETH/BTC"]
    assert len(rows) == 5760 - 30 - 1
    # the default strategy yields float signals (NaN -> 0.0), missing shorts (int 0), str tags
    assert {type(x) for x in rows[200]} == {pd.Timestamp, float, int, str}
    assert any(row[5] == 1.0 for row in rows) and any(row[9] == "rsi_low" for row in rows)


def test_real_data_trimmed_by_timerange(strategy):
    frame = load("LTC_BTC-5m")
    processed = strategy.advise_all_indicators({"LTC/BTC": frame, "ETH/BTC": load("ETH_BTC-5m")})
    start, stop = frame["date"].iloc[500], frame["date"].iloc[4000]
    timerange = TimeRange("date", "date", int(start.timestamp()), int(stop.timestamp()))
    expected, _ = assert_equivalent(strategy, processed, timerange=timerange, startup=0)
    assert len(expected["result"]["LTC/BTC"]) == 3500


def test_real_data_1m(strategy):
    processed = strategy.advise_all_indicators({"UNITTEST/BTC": load("UNITTEST_BTC-1m")})
    assert_equivalent(strategy, processed, startup=30)


def test_real_data_processed_twice(strategy):
    """Frames that already hold signal columns (a second run on the same frames)."""
    processed = strategy.advise_all_indicators({"ETH/BTC": load("ETH_BTC-5m")})
    run(OPTIMIZED, strategy, processed, TimeRange(None, None, 0, 0), 0)
    processed = {
        k: strategy.advise_exit(strategy.advise_entry(v, {"pair": k}), {"pair": k})
        for k, v in processed.items()
    }
    processed["ETH/BTC"]["buy"] = 1
    assert_equivalent(strategy, processed, startup=5)


# ---------------------------------------------------------------------------------------------
# explicit edge cases


def frame(rows: int, start="2024-01-01", unit="ns", tz="UTC", freq="5min") -> pd.DataFrame:
    rng = np.random.default_rng(rows)
    close = np.round(10 + rng.random(rows), 4)
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=rows, freq=freq, tz=tz, unit=unit),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": rng.random(rows),
            "rsi": rng.uniform(0, 100, rows),  # the default signals' indicators
            "sma_fast": close,
            "sma_slow": np.round(10.5 + rng.random(rows) / 2, 4),
        }
    )


def setter(**columns) -> Callable:
    """A signal hook assigning fresh copies of the given columns (None: drop the column)."""

    def hook(dataframe, metadata):
        for name, values in columns.items():
            if values is None:
                dataframe = dataframe.drop(columns=[name], errors="ignore")
            else:
                dataframe[name] = copy.deepcopy(values)
        return dataframe

    return hook


def test_empty_processed(strategy):
    expected, _ = assert_equivalent(strategy, {})
    assert expected["result"] == {}


@pytest.mark.parametrize("rows", [0, 1, 2, 3])
def test_tiny_frames(strategy, rows):
    # an empty frame makes Freqtrade's own advise_entry raise (no index to set a scalar on)
    assert_equivalent(strategy, {"A/B": frame(rows), "C/D": frame(rows + 1)}, raises=rows == 0)


def test_startup_trims_everything(strategy):
    assert_equivalent(strategy, {"A/B": frame(5)}, startup=10)


def test_int_signals_become_floats_when_shifted(strategy):
    hook = setter(
        enter_long=np.array([1, 0, 1, 1, 0]),
        exit_long=np.array([True, False, True, False, True]),
        enter_short=np.array([0, 0, 1, 0, 1], dtype=np.uint8),
        exit_short=None,
    )
    expected, _ = assert_equivalent(strategy, {"A/B": frame(5)}, hook=hook)
    row = expected["result"]["A/B"][0]
    assert [type(x) for x in row[5:9]] == [float, bool, float, int]  # exit_short missing: 0
    assert row[5:9] == [1.0, True, 0.0, 0]


def test_tag_semantics(strategy):
    hook = setter(
        enter_long=np.array([1.0, np.nan, 1.0, np.nan]),
        enter_tag=pd.array(["a", None, "b", ""], dtype="str"),  # NaN makes it object / None
        exit_tag=pd.Series(["x", None, np.nan, "y"], dtype=object),
    )
    expected, _ = assert_equivalent(strategy, {"A/B": frame(4)}, hook=hook)
    rows = expected["result"]["A/B"]
    assert [row[9] for row in rows] == ["a", None, "b"]
    assert [row[10] for row in rows] == ["x", None, None]
    assert [row[5] for row in rows] == [1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "values",
    [
        pd.array([1, None, 0, 1], dtype="Int64"),
        pd.array([1.0, None, 0.5, 1.0], dtype="Float64"),
        pd.array([True, False, True, True], dtype="boolean"),
        pd.array([True, None, True, True], dtype="boolean"),  # replace(NaN -> 0) raises
        pd.Categorical([1, 0, 1, 0]),
        np.array([1, None, "x", np.nan], dtype=object),
        np.array([1.0, -0.0, np.inf, np.nan]),
        np.array([0.5, 2.0, 1.0, 0.0], dtype=np.float32),
        np.array([2**63 + 11, 0, 1, 2], dtype=np.uint64),
        np.array([1, 2, 3, 4], dtype="datetime64[s]"),
        pd.array([1.0, None, 0.0, 1.0], dtype="float64[pyarrow]"),
    ],
    ids=repr,
)
def test_odd_signal_dtypes(strategy, values):
    raises = isinstance(values, pd.arrays.BooleanArray) and bool(values.isna().any())
    hook = setter(enter_long=values, exit_tag=values)
    assert_equivalent(strategy, {"A/B": frame(4)}, hook=hook, raises=raises)


def test_categorical_and_missing_tags(strategy):
    hook = setter(enter_tag=pd.Categorical(["a", None, "a", "b"]), exit_tag=None)
    assert_equivalent(strategy, {"A/B": frame(4)}, hook=hook)


@pytest.mark.parametrize(
    "index",
    [
        pd.RangeIndex(100, 106),
        pd.Index([5, 3, 9, 1, 0, 7]),
        pd.Index(list("abcdef")),
        pd.date_range("2020", periods=6),
        pd.Index([0, 1, 0, 2, 3, 0]),  # duplicates: every row labelled like the first is dropped
        pd.Index([1, 1, 2, 2, 3, 3]),
        pd.Index([np.nan, 1.0, np.nan, 2.0, 3.0, 4.0]),
        pd.MultiIndex.from_tuples([(0, "a"), (0, "b"), (1, "a"), (1, "b"), (2, "a"), (2, "b")]),
    ],
    ids=repr,
)
def test_indexes(strategy, index):
    data = frame(6)
    data.index = index
    assert_equivalent(strategy, {"A/B": data}, startup=0)
    assert_equivalent(strategy, {"A/B": data}, startup=2)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin"])
def test_date_units_and_zones(strategy, unit, tz):
    processed = {
        "A/B": frame(8, unit=unit, tz=tz),
        "C/D": frame(5, start="2024-01-01 00:10", unit=unit, tz=tz),  # shares A/B's dates
        "E/F": frame(8, unit="ns" if unit != "ns" else "s", tz=tz),
    }
    assert_equivalent(strategy, processed)


def test_equal_zones_of_other_types_are_not_shared(strategy):
    """datetime.timezone.utc, pytz.UTC and dateutil's UTC print alike: each keeps its tzinfo."""
    pytz = pytest.importorskip("pytz")
    dateutil_tz = pytest.importorskip("dateutil.tz")
    processed = {}
    for name, zone in (("A/B", UTC), ("C/D", pytz.UTC), ("E/F", dateutil_tz.tzutc()), ("G/H", UTC)):
        data = frame(8)
        data["date"] = data["date"].dt.tz_convert(zone)
        processed[name] = data
    _, got = assert_equivalent(strategy, processed)
    zones = [type(got["result"][pair][0][0].tzinfo) for pair in processed]
    assert zones[0] is zones[3] and len(set(zones)) == 3


def test_dst_fold(strategy):
    data = frame(30, start="2024-10-27 00:00", tz="UTC", freq="10min")
    data["date"] = data["date"].dt.tz_convert("Europe/Berlin")
    assert_equivalent(strategy, {"A/B": data, "C/D": data.iloc[3:].reset_index(drop=True)})


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # MultiIndex columns
def test_odd_frames_fall_back_exactly(strategy):
    duplicated = frame(5)
    duplicated.insert(6, "open", duplicated["open"], allow_duplicates=True)
    multi = frame(5)
    multi.columns = pd.MultiIndex.from_arrays([multi.columns, ["x"] * len(multi.columns)])
    object_date = frame(5)
    object_date["date"] = object_date["date"].astype(object)
    nullable_prices = frame(5)
    nullable_prices["close"] = nullable_prices["close"].astype("Float64")
    int_prices = frame(5)
    int_prices["open"] = np.arange(5, dtype=np.int32)
    no_close = frame(5).drop(columns=["close"])
    assert_equivalent(strategy, {"A/B": duplicated}, raises=True)  # Freqtrade's .loc raises
    assert_equivalent(strategy, {"A/B": no_close}, raises=True)  # df[HEADERS]: KeyError
    for data in (object_date, nullable_prices, int_prices):
        assert_equivalent(strategy, {"A/B": data})
    assert_equivalent(strategy, {"A/B": multi}, hook=lambda df, md: df)


def test_changed_headers_fall_back(strategy, monkeypatch):
    monkeypatch.setattr(bt_module, "HEADERS", [*bt_module.HEADERS, "volume"])
    expected, _ = assert_equivalent(strategy, {"A/B": frame(6)})
    assert len(expected["result"]["A/B"][0]) == 12


def test_abort_propagates_without_side_effects(strategy):
    processed = {"A/B": frame(6), "C/D": frame(6)}
    expected, got = assert_equivalent(strategy, processed, abort=True, raises=True)
    assert isinstance(got["error"], DependencyException)
    assert got["cache"] == {} and got["advised"] == []


def test_dates_are_shared_between_pairs_but_equal(strategy):
    processed = {"A/B": frame(50), "C/D": frame(40, start="2024-01-01 00:50"), "E/F": frame(50)}
    _, got = assert_equivalent(strategy, processed)
    rows = got["result"]
    assert rows["C/D"][0][0] is rows["A/B"][10][0]
    assert rows["E/F"][5][0] is rows["A/B"][5][0]


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_restored(strategy, enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        run(OPTIMIZED, strategy, {"A/B": frame(20)}, TimeRange(None, None, 0, 0), 0)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.parametrize(
    "dtype, rule",
    [
        ("f8", "same"),
        ("f4", "same"),
        ("f2", "same"),
        ("i8", "float64"),
        ("u1", "float64"),
        ("b1", "object"),
        ("c16", None),
        ("O", None),
        ("M8[ns]", None),
    ],
)
def test_shift_rules_are_probed_from_pandas(dtype, rule):
    assert ohlcv_lists._shift_rule(np.dtype(dtype)) == rule


# ---------------------------------------------------------------------------------------------
# generated frames


TZS = [None, "UTC", UTC, "Europe/Berlin"]


@st.composite
def signal_values(draw, rows: int, tag: bool):
    """A signal (or tag) column of one drawn kind; None: the column is removed."""
    kinds = (
        ["missing", "keep", "str", "object", "category", "float"]
        if tag
        else [
            "missing",
            "float",
            "float",
            "int",
            "bool",
            "object",
            "category",
            "Int64",
            "odd_float",
        ]
    )
    kind = draw(st.sampled_from(kinds))
    if kind in ("missing", "keep"):
        return None if kind == "missing" else "keep"

    def column(pool):
        return draw(st.lists(pool, min_size=rows, max_size=rows))

    if kind == "float":
        return np.array(column(st.sampled_from([0.0, 1.0, np.nan])), dtype=float)
    if kind == "odd_float":
        values = column(st.sampled_from([0.0, 1.0, -0.0, 2.5, np.inf, np.nan]))
        return np.array(values, dtype=draw(st.sampled_from(["f8", "f4"])))
    if kind == "int":
        return np.array(column(st.integers(0, 2)), dtype=draw(st.sampled_from(["i8", "i4", "u1"])))
    if kind == "bool":
        return np.array(column(st.booleans()), dtype=bool)
    if kind == "Int64":
        return pd.array(column(st.one_of(st.none(), st.integers(0, 1))), dtype="Int64")
    if not tag:  # object / category signals (NaN in a category without 0 makes replace raise)
        pool = [0, 1, 1.0, None, np.nan, "x"] if kind == "object" else [0, 1]
        values = column(st.sampled_from(pool))
        return np.array(values, dtype=object) if kind == "object" else pd.Categorical(values)
    pool = ["", "a", "long_tag", None] + ([np.nan] if kind != "str" else [])
    values = column(st.sampled_from(pool))
    if kind == "str":
        return pd.array(values, dtype="str")
    if kind == "category":
        return pd.Categorical(values)
    if kind == "float":
        return np.array([np.nan if v in ("", None) else float(len(v)) for v in values])
    return np.array(values, dtype=object)


@st.composite
def pair_frames(draw):
    rows = draw(st.integers(1, 12))  # empty frames: test_tiny_frames (advise_entry raises)
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    tz = draw(st.sampled_from(TZS))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 7]), min_size=rows, max_size=rows))
    minutes = np.cumsum([0, *steps[:-1]]) * 5 if rows else np.array([], dtype=int)
    offset = draw(st.integers(0, 4)) * 5
    dates = pd.DatetimeIndex(
        pd.Timestamp("2024-01-01") + pd.to_timedelta(minutes + offset, unit="min")
    ).as_unit(unit)
    if tz is not None:
        dates = dates.tz_localize(tz)
    prices = draw(
        st.lists(st.one_of(st.floats(0.001, 1e6), st.just(np.nan)), min_size=rows, max_size=rows)
    )
    data = pd.DataFrame({"date": dates, "open": np.array(prices, dtype=float)})
    data["high"] = data["open"] * 1.01
    data["low"] = data["open"] * 0.99
    data["close"] = data["open"].astype(draw(st.sampled_from(["f8", "f8", "f4"])))
    data["volume"] = np.arange(rows, dtype=float)
    for i in range(draw(st.integers(0, 3))):
        data[f"ind_{i}"] = np.linspace(0, 1, rows)
    if draw(st.booleans()):
        data["enter_long"] = 1.0  # left from a prior run: the discarded cleanup drop
    index = draw(st.sampled_from(["range", "offset", "strings", "duplicates"]))
    if index == "offset":
        data.index = pd.RangeIndex(7, 7 + rows)
    elif index == "strings":
        data.index = [f"r{i}" for i in range(rows)]
    elif index == "duplicates" and rows:
        data.index = [i // 2 for i in range(rows)]
    columns = {name: draw(signal_values(rows, name in TAGS)) for name in SIGNALS + TAGS}
    return data, columns


def spec_hook(specs: dict) -> Callable:
    """Per pair: assign the drawn signal/tag columns (keep: leave advise's "" tags)."""

    def hook(dataframe, metadata):
        for name, values in specs[metadata["pair"]].items():
            if values is None:
                dataframe = dataframe.drop(columns=[name], errors="ignore")
            elif not isinstance(values, str):
                dataframe[name] = copy.deepcopy(values)
        return dataframe

    return hook


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(pair_frames(), min_size=1, max_size=3), startup=st.integers(0, 3))
def test_generated_frames(strategy, frames, startup):
    processed = {f"P{i}/USDT": data for i, (data, _) in enumerate(frames)}
    specs = {f"P{i}/USDT": columns for i, (_, columns) in enumerate(frames)}
    assert_equivalent(strategy, processed, startup=startup, hook=spec_hook(specs), raises=None)
