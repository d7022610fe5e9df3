"""Vectorized `Backtesting._get_ohlcv_as_lists`: row lists built from the needed columns only.

Per pair the original runs the strategy's signals, caches and trims the frame like we do, then
deep-copies the whole trimmed frame (every indicator column), shifts the signal columns with
pandas, drops the first row (again a full copy), and converts ``df[HEADERS].values`` (an object
array) to lists. Here the side effects (progress, ``check_abort()``, the discarded cleanup
``drop``, ``ft_advise_signals``, the dataprovider cache, ``processed[pair]`` = the trimmed frame
with unshifted signals) are the original's own statements in the same order; only the conversion
differs. It reads the 11 ``HEADERS`` columns of the trimmed frame, drops row 0 by slicing (the
index is unique) and builds each column as a Python list with the element types the original's
object array holds (``Block.get_values(object)``, i.e. ``astype(object)``):

* ``date``: ``pd.Timestamp`` (``DatetimeArray.astype(object)``: same unit and tz);
  ``open/high/low/close``: ``ndarray.tolist()`` (Python float / int / bool, as ``astype(object)``).
* numpy signal columns, where ``replace([nan], [0]).shift(1)`` keeps only rows ``0..n-2`` of the
  replaced values: float -> NaN replaced by 0, same float dtype (Python float); int/uint ->
  float64 (Python float: an int ``1`` becomes ``1.0``); bool -> object (Python bool). These dtype
  rules are probed once per dtype against pandas; a dtype that behaves otherwise takes the pandas
  path. Columns of exactly 0.0/1.0 reuse two float objects (equal values, same type, less memory).
* tags and any other signal dtype (object, str, category, nullable, arrow): the original's own
  ``replace(...).shift(1)`` on that single column, then ``astype(object)``. With pandas 3 a ``str``
  tag column stays ``str`` (Python str) unless it holds NaN, which makes it object with ``None``.
* a missing signal column: ``0`` (Python int, not shifted); a missing tag column: ``None``.

Rows are ``list(map(list, zip(*columns)))`` with the cyclic GC paused (the rows and Timestamps are
GC-tracked containers; collections during the build cost more than the build itself).
A trimmed frame outside that model (empty, non-unique index or columns, MultiIndex columns, a
missing price column, a ``date`` that is not datetime64, non-numpy or >64-bit price dtypes,
changed ``HEADERS``) is converted by the original's own statements for that pair.
"""

from __future__ import annotations

import copy
import gc
import importlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from freqtrade.exceptions import DependencyException
from numpy import nan

from freqtrade_opt_plugin.optimizations import column_rows
from freqtrade_opt_plugin.optimizations.verified import VERIFIED
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel, VerifyCase


logger = logging.getLogger(__name__)

_TARGET_MODULE = "freqtrade.optimize.backtesting"
_TARGET = f"{_TARGET_MODULE}:Backtesting._get_ohlcv_as_lists"
_HEADERS = [
    "date",
    "open",
    "high",
    "low",
    "close",
    "enter_long",
    "exit_long",
    "enter_short",
    "exit_short",
    "enter_tag",
    "exit_tag",
]
_PRICES = _HEADERS[1:5]
_SIGNALS = _HEADERS[5:9]
_TAGS = _HEADERS[9:]
_FLOAT_01 = np.array([0.0, 1.0], dtype=object)  # shared Python floats for 0/1 signal columns
_SHIFT_RULES: dict[np.dtype, str | None] = {}


def _get_ohlcv_as_lists(self, processed: dict[str, pd.DataFrame]) -> dict[str, tuple]:
    """
    Helper function to convert a processed dataframes into lists for performance reasons.

    Same result and side effects as Freqtrade's original (see the module docstring).
    :param processed: a processed dictionary with format {pair, data}, which gets cleared to
    optimize memory usage!
    """
    bt = importlib.import_module(_TARGET_MODULE)  # its namespace, as the original sees it
    as_columns = column_rows.take_wish()
    data: dict = {}
    dates = _SharedDates()
    self._set_progress_step(bt.BacktestState.CONVERT, len(processed))

    for pair, pair_data in processed.items():
        self.check_abort()
        self._increment_progress()

        if not pair_data.empty:
            # The original's cleanup: its result is discarded (kept for identical behaviour).
            pair_data.drop(bt.HEADERS[5:] + ["buy", "sell"], axis=1, errors="ignore")
        df_analyzed = self.strategy.ft_advise_signals(pair_data, {"pair": pair})
        self.dataprovider._set_cached_df(
            pair, self.timeframe, df_analyzed, self.config["candle_type_def"]
        )
        df_analyzed = processed[pair] = pair_data = bt.trim_dataframe(
            df_analyzed, self.timerange, startup_candles=self.required_startup
        )
        data[pair] = _rows(df_analyzed, bt.HEADERS, dates, as_columns)
    return data


def _rows(df: pd.DataFrame, headers: list[str], dates: _SharedDates,
          as_columns: bool = False) -> Sequence:
    """The original's rows (signals shifted by one candle, first row dropped) of a trimmed frame;
    as `column_rows.ColumnRows` (the same elements, rows built on access) if `as_columns`."""
    if headers != _HEADERS or not _supported(df):
        return _original_rows(df, headers)
    size = len(df) - 1
    with _gc_paused():
        columns = [] if as_columns else [dates.objects(df["date"].array[1:])]
        columns += [df[col].to_numpy()[1:].tolist() for col in _PRICES]
        for col in _SIGNALS:
            columns.append(_signal_objects(df, col, size))
        for col in _TAGS:
            if col in df.columns:
                columns.append(_pandas_shifted(df[col], None))
            else:
                columns.append([None] * size)
        if as_columns:
            return column_rows.ColumnRows(df["date"].array[1:], columns)
        return list(map(list, zip(*columns, strict=True)))


def _supported(df: object) -> bool:
    """Whether the fast conversion models this trimmed frame exactly."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        return False
    columns = df.columns
    if isinstance(columns, pd.MultiIndex) or not columns.is_unique or not df.index.is_unique:
        return False
    if any(col not in columns for col in _HEADERS[:5]):
        return False
    date_dtype = df["date"].dtype
    if not (isinstance(date_dtype, pd.DatetimeTZDtype) or _is_np_kind(date_dtype, "M")):
        return False
    return all(_is_plain_number(df[col].dtype) for col in _PRICES)


def _is_np_kind(dtype: object, kinds: str) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in kinds


def _is_plain_number(dtype: object) -> bool:
    """numpy bool/int/uint/float up to 64 bits: tolist() gives astype(object)'s Python scalars."""
    return _is_np_kind(dtype, "biuf") and dtype.itemsize <= 8  # type: ignore[union-attr]


def _as_objects(values: object) -> list:
    """Elements as in ``DataFrame.values`` of a mixed frame (``Block.get_values(object)``)."""
    if isinstance(values, pd.arrays.NumpyExtensionArray):
        values = values.to_numpy()
    if isinstance(values, np.ndarray):
        if _is_plain_number(values.dtype):
            return values.tolist()
        return values.astype(object).tolist()
    return np.asarray(values.astype(object)).tolist()  # type: ignore[attr-defined]


def _pandas_shifted(series: pd.Series, fill: object) -> list:
    """The original's replace/shift of one column, minus the dropped first row, as objects."""
    shifted = series.replace([nan], [fill]).shift(1)
    return _as_objects(shifted.array[1:])


def _signal_objects(df: pd.DataFrame, col: str, size: int) -> list:
    if col not in df.columns:
        return [0] * size
    series = df[col]
    rule = _shift_rule(series.dtype)
    if rule is None:
        return _pandas_shifted(series, 0)
    return _numpy_shifted(series.to_numpy(), rule)


def _numpy_shifted(values: np.ndarray, rule: str) -> list:
    """`_pandas_shifted(Series(values), 0)` for a numpy bool/int/float column, per `rule`."""
    values = values[:-1]
    if rule == "object":  # bool: shifted into an object column of Python bools
        return values.tolist()
    if rule == "float64":  # int/uint: shifted into float64
        values = values.astype(np.float64)
    else:  # float: NaN replaced by 0, dtype kept
        missing = np.isnan(values)
        if missing.any():
            values = np.where(missing, values.dtype.type(0), values)
    return _float_objects(values)


def _float_objects(values: np.ndarray) -> list:
    """``values.tolist()``, sharing two float objects when every value is 0.0 or 1.0."""
    ones = values == 1
    if not (ones | (values == 0)).all() or np.signbit(values).any():
        return values.tolist()
    return _FLOAT_01.take(ones.view(np.int8)).tolist()


def _shift_rule(dtype: object) -> str | None:
    """How ``replace([nan], [0]).shift(1)`` treats a numpy signal dtype, probed once per dtype.

    "same" (float: NaN -> 0, dtype kept), "float64" (int/uint -> float64), "object" (bool ->
    Python bools), or None (anything else, and any dtype the probe does not confirm): the
    column is then converted through pandas itself.
    """
    if not _is_plain_number(dtype):
        return None
    dtype = np.dtype(dtype)  # type: ignore[arg-type]
    if dtype not in _SHIFT_RULES:
        _SHIFT_RULES[dtype] = _probe_shift_rule(dtype)
    return _SHIFT_RULES[dtype]


def _probe_shift_rule(dtype: np.dtype) -> str | None:
    """The rule for `dtype` if pandas' own replace/shift gives the same dtype and objects."""
    if dtype.kind == "f":
        rule, expected = "same", dtype
        sample = np.array([nan, 1, 0, -0.0, 0.5, nan, 1], dtype=dtype)
    elif dtype.kind == "b":
        rule, expected = "object", np.dtype(object)
        sample = np.array([True, False, True, True], dtype=dtype)
    else:
        rule, expected = "float64", np.dtype(np.float64)
        sample = np.array([1, 0, 2, 1, 0], dtype=dtype)
    try:
        if pd.Series(sample).replace([nan], [0]).shift(1).dtype != expected:
            return None
        want = _pandas_shifted(pd.Series(sample), 0)
        got = _numpy_shifted(sample, rule)
    except Exception:  # any surprise: let pandas do it
        return None
    same = [(type(x), repr(x)) for x in got] == [(type(x), repr(x)) for x in want]
    return rule if same else None


class _SharedDates:
    """``DatetimeArray.astype(object)`` as a list, sharing the Timestamps between the pairs of one
    call: a pair whose dates are a run of an earlier pair's (same dtype, same tz object, strictly
    increasing) gets a slice of that pair's Timestamps (equal values of the same type, unit and
    tzinfo; creating them is the costliest step of the conversion)."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: list[tuple[str, object, np.ndarray, list]] = []

    def objects(self, dates: pd.api.extensions.ExtensionArray) -> list:
        if not isinstance(dates, pd.arrays.DatetimeArray) or len(dates) == 0:
            return _as_objects(dates)
        key, tz, stamps = str(dates.dtype), dates.tz, dates.asi8
        size = len(stamps)
        for known_key, known_tz, known, objects in self._known:
            if known_key != key or known_tz is not tz or len(known) < size:
                continue
            start = int(np.searchsorted(known, stamps[0]))
            if start + size <= len(known) and np.array_equal(known[start : start + size], stamps):
                return objects[start : start + size]
        objects = _as_objects(dates)
        if size > 1 and bool((stamps[1:] > stamps[:-1]).all()):
            self._known.append((key, tz, stamps.copy(), objects))
        return objects


def _original_rows(df_analyzed: pd.DataFrame, headers: list[str]) -> list:
    """The original's statements after trimming, verbatim (frames outside the fast model)."""
    df_analyzed = df_analyzed.copy()
    for col in headers[5:]:
        tag_col = col in ("enter_tag", "exit_tag")
        if col in df_analyzed.columns:
            df_analyzed[col] = (
                df_analyzed.loc[:, col].replace([nan], [0 if not tag_col else None]).shift(1)
            )
        elif not df_analyzed.empty:
            df_analyzed[col] = 0 if not tag_col else None

    df_analyzed = df_analyzed.drop(df_analyzed.head(1).index)
    return df_analyzed[headers].values.tolist() if not df_analyzed.empty else []


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (process-wide, nesting- and thread-safe); restores its prior state."""
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                gc.enable()


# --- verify case: ``freqtrade-opt verify`` on the user's strategy and candles ---------------------

class _RecordingProgress:
    """Stands in for Backtesting's progress bar: records each update."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def update(self, task: Any, **kwargs: Any) -> None:
        self.calls.append((task, sorted((key, repr(value)) for key, value in kwargs.items())))


def _backtesting_for(inputs: Any, strategy: Any) -> Any:
    """A Backtesting with exactly the state `_get_ohlcv_as_lists` reads (no exchange).

    The method only touches the strategy, a DataProvider, the config, timeframe, timerange,
    startup count, progress and abort flag; a full ``Backtesting(config)`` would add an exchange
    object (markets from the network) the method never uses, so this works offline.
    """
    from freqtrade.data.dataprovider import DataProvider
    from freqtrade.optimize.backtesting import Backtesting

    bt = Backtesting.__new__(Backtesting)
    bt.config = inputs.config
    bt.strategy = strategy
    bt.dataprovider = DataProvider(inputs.config, None)
    strategy.dp = bt.dataprovider
    bt.timeframe = inputs.timeframe
    bt.timerange = copy.deepcopy(inputs.timerange)
    bt.required_startup = inputs.startup
    bt.progress = _RecordingProgress()
    bt._progress_task_overall = "overall"
    bt._progress_task = "detail"
    bt.abort = False
    return bt


def _run_ohlcv(func: Callable, inputs: Any, strategy: Any, processed: dict) -> dict[str, Any]:
    from freqtrade_opt_plugin.checks import call

    processed = copy.deepcopy(processed)
    bt = _backtesting_for(inputs, strategy)
    outcome = call(func, bt, processed)
    cache = getattr(bt.dataprovider, "_DataProvider__cached_pairs", {})
    return {
        "outcome": outcome,
        "processed": processed,
        "cache": {key[0]: frame for key, (frame, _) in cache.items()},
        "progress": bt.progress.calls,
    }


def _stock_frames(inputs: Any) -> dict[str, pd.DataFrame]:
    """The candles as Backtesting hands them to the strategy (after the stock tick size)."""
    from freqtrade_opt_plugin.checks import resolve_original
    from freqtrade_opt_plugin.optimizations.tick_size import OPTIMIZATION as TICK_SIZE

    missing = [pair for pair in inputs.pairs if pair not in inputs.stock_frames]
    if missing:
        tick_size = resolve_original(TICK_SIZE.target)
        for pair in missing:
            frame = inputs.candles[pair].copy(deep=True)
            tick_size(frame)
            inputs.stock_frames[pair] = frame
    return {pair: inputs.stock_frames[pair] for pair in inputs.pairs}


def _timestamp_difference(got: list, expected: list) -> str | None:
    """Unit and time zone of the rows' dates (equal Timestamps may still differ in those)."""
    for i, (row, row2) in enumerate(zip(got, expected, strict=False)):
        a, b = row[0], row2[0]
        if isinstance(a, pd.Timestamp) and (a.unit != b.unit or str(a.tz) != str(b.tz)):
            return f"rows[{i}][0]: Timestamp unit/tz {a.unit}/{a.tz} != {b.unit}/{b.tz}"
    return None


def verify_ohlcv_as_lists(subject: Any, inputs: Any) -> Iterator[Any]:
    """On the strategy's analyzed frames (indicators computed by the user's strategy on the
    candles as Backtesting prepares them). Per pair: the rows, the frame left in ``processed``
    and the DataProvider cache; the progress updates for the whole call."""
    from freqtrade.data.dataprovider import DataProvider

    from freqtrade_opt_plugin.checks import ALL_PAIRS, outcome_difference, status_of
    from freqtrade_opt_plugin.equality import first_difference

    if inputs.strategy is None:
        yield subject.skip(inputs.strategy_problem or "no strategy")
        return
    strategy = inputs.strategy
    strategy.dp = DataProvider(inputs.config, None)
    strategy.wallets = None
    try:
        strategy.ft_bot_start()
    except Exception as exc:  # bot_start may need a live bot; the signals usually do not
        logger.warning("freqtrade-opt verify: %s.bot_start() failed (%s); continuing",
                       type(strategy).__name__, exc)
    processed = strategy.advise_all_indicators(_stock_frames(inputs))
    expected = _run_ohlcv(subject.original, inputs, strategy, processed)
    got = _run_ohlcv(subject.optimized, inputs, strategy, processed)
    e_out, g_out = expected["outcome"], got["outcome"]
    if e_out.error is not None or g_out.error is not None:
        difference = outcome_difference(g_out, e_out, "rows")
        yield subject.check(ALL_PAIRS, "call", status_of(difference, e_out.error))
        return
    rows, rows2 = g_out.result, e_out.result
    if type(rows) is not dict or list(rows) != list(rows2):
        difference = first_difference(rows, rows2, "rows")
        yield subject.check(ALL_PAIRS, "call", status_of(difference or "rows: keys differ"))
        return
    for pair in rows2:
        difference = (
            first_difference(rows[pair], rows2[pair], "rows")
            or _timestamp_difference(rows[pair], rows2[pair])
            or first_difference(got["processed"].get(pair), expected["processed"].get(pair),
                                "processed frame after the call")
            or first_difference(got["cache"].get(pair), expected["cache"].get(pair),
                                "dataprovider cache")
        )
        yield subject.check(pair, "", status_of(difference))
    difference = (
        first_difference(list(got["processed"]), list(expected["processed"]), "processed keys")
        or first_difference(got["progress"], expected["progress"], "progress updates")
    )
    yield subject.check(ALL_PAIRS, "side effects", status_of(difference))


OPTIMIZATION = Optimization(
    name="ohlcv_as_lists",
    target=_TARGET,
    replacement=_get_ohlcv_as_lists,
    tier=OptimizationLevel.STANDARD,
    fingerprints=VERIFIED[_TARGET],
    description=(
        "Builds the per-pair row lists from the 11 needed columns (numpy signal shift, "
        "column-wise tolist + zip) instead of copying the whole analyzed frame twice and "
        "converting an object array"
    ),
    default_percentage=100,
    performance_threshold=0.9,
    shadow=False,  # runs strategy code and sets Backtesting state: not copyable
    propagates=(DependencyException,),
    verify_case=VerifyCase(verify_ohlcv_as_lists, planned=lambda inputs: len(inputs.pairs) + 1),
)
