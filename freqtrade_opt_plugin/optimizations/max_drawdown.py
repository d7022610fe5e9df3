"""numpy `calculate_max_drawdown`: the same float operations on column arrays, no pandas frames.

The original sorts the trades by date, builds a drawdown frame with `_calc_drawdown_series`
(cumsum, cummax, ``np.maximum(0, ...)``, relative drawdown), prepends a zero row with
`pd.concat` and reads the result with `idxmin` / `idxmax` / `.at`. On realistic trade counts its
cost is pandas overhead. This replacement performs the identical numpy operations, in the same
order, on the value column, so every float is bit-identical:

* sort: ``DataFrame.sort_values(date_col)`` (quicksort, not stable) reaches
  ``ndarray.argsort(kind="quicksort")`` on the column's datetime64 array
  (``nargsort`` -> ``DatetimeArray.argsort`` -> ``_values_for_argsort``). The tie order of that
  sort depends on the dtype (datetime64 and int64 views order ties differently), so the same
  datetime64 array is sorted, and only when the dates are not already strictly increasing.
  A one-time probe per dtype checks that pandas still orders ties this way, else such frames go
  to the original.
* ``Series.cumsum`` / ``cummax`` of NaN-free float64 are ``np.cumsum`` /
  ``np.maximum.accumulate``; the others are the same ufunc calls with the same operand order
  (this matters for -0.0: ``np.maximum(0, -0.0)`` is -0.0).
* ``idxmin`` / ``idxmax`` are first-occurrence ``argmin`` / ``argmax`` with NaN filled by +/-inf,
  as pandas' ``nanargmin`` / ``nanargmax`` do.

Delegated to ``wrapped`` (what runs without this optimization: Freqtrade's original): anything but
a DataFrame with a unique datetime64 (naive or tz-aware) date column and a float64 value column;
NaT dates; a non-finite cumulative sum (NaN / inf values, which pandas' NaN-skipping cumsum treats
differently, or an overflow); a starting balance that is not an int or float; a million trades or
more (where pandas may switch its arithmetic to numexpr). An empty frame raises the original's
``ValueError("Trade dataframe empty.")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from freqtrade_opt_plugin.registry import (
    BenchCase,
    Optimization,
    OptimizationLevel,
    VerifyCase,
)


_TARGET_MODULE = "freqtrade.data.metrics"
_TARGET = f"{_TARGET_MODULE}:calculate_max_drawdown"
_FLOAT64 = np.dtype(np.float64)
# From this size on pandas may evaluate the Series arithmetic with numexpr instead of numpy
# (pandas.core.computation.expressions._MIN_ELEMENTS): left to the original.
_NUMEXPR_MIN_ELEMENTS = 1_000_000


def factory(wrapped: Callable[..., Any]) -> Callable[..., Any]:
    """The replacement in front of `wrapped` (which gets the inputs outside the fast model)."""

    def calculate_max_drawdown(
        trades: pd.DataFrame,
        *,
        date_col: str = "close_date",
        value_col: str = "profit_abs",
        starting_balance: float = 0,
        relative: bool = False,
    ):
        """
        Calculate max drawdown and current drawdown with corresponding dates (same result as
        Freqtrade's original, computed on numpy arrays).
        :param trades: DataFrame containing trades (requires columns close_date and profit_abs)
        :param date_col: Column in DataFrame to use for dates (defaults to 'close_date')
        :param value_col: Column in DataFrame to use for values (defaults to 'profit_abs')
        :param starting_balance: Portfolio starting balance - properly calculate relative
            drawdown.
        :param relative: If True, use relative drawdown for max calculation instead of absolute
        :return: DrawDownResult object
        :raise: ValueError if trade-dataframe was found empty.
        """
        result = _drawdown(trades, date_col, value_col, starting_balance, relative)
        if result is not None:
            return result
        return wrapped(trades, date_col=date_col, value_col=value_col,
                       starting_balance=starting_balance, relative=relative)

    return calculate_max_drawdown


def _drawdown(trades, date_col, value_col, starting_balance, relative):
    """The fast path's DrawDownResult, or None for inputs outside its model."""
    if len(trades) == 0:
        raise ValueError("Trade dataframe empty.")
    try:
        prepared = _prepare(trades, date_col, value_col, starting_balance)
        return None if prepared is None else _compute(*prepared, starting_balance, relative)
    except ValueError as exc:
        # ValueError is the original's "no result" contract (callers catch it): a failure of
        # this path must not pass for it, but reach the Router's fallback instead.
        raise RuntimeError(f"max_drawdown fast path failed: {exc}") from exc


def _prepare(trades, date_col, value_col, starting_balance):
    """(date array, sort keys, float64 values) for the fast path, or None to delegate."""
    if not isinstance(trades, pd.DataFrame) or len(trades) >= _NUMEXPR_MIN_ELEMENTS:
        return None
    if type(starting_balance) not in (int, float) and not isinstance(
        starting_balance, (np.floating, np.integer)
    ):
        return None
    try:
        if date_col in trades.index.names:
            return None  # sort_values also sorts by index levels, or finds the label ambiguous
        dates = trades[date_col]
        values = trades[value_col]
    except Exception:  # missing / unhashable labels: the original raises its own error
        return None
    if not isinstance(dates, pd.Series) or not isinstance(values, pd.Series):
        return None  # duplicate column labels
    if values.dtype != _FLOAT64 or not _is_datetime(dates.dtype):
        return None
    date_array = dates.array
    keys = date_array._values_for_argsort()  # what pandas' sort_values sorts: datetime64
    if not isinstance(keys, np.ndarray) or keys.dtype.kind != "M" or len(keys) != len(trades):
        return None
    return date_array, keys, values.to_numpy()


def _is_datetime(dtype) -> bool:
    """numpy datetime64 or pandas' tz-aware datetime (not pyarrow timestamps)."""
    if isinstance(dtype, pd.DatetimeTZDtype):
        return True
    return isinstance(dtype, np.dtype) and dtype.kind == "M"


def _compute(date_array, keys, values, starting_balance, relative):
    from freqtrade.data.metrics import DrawDownResult

    if np.isnat(keys).any():
        return None
    order = None
    if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
        # Not strictly increasing: the sort, and the order it gives to equal dates, matter.
        if not _quicksort_matches_pandas(keys.dtype):
            return None
        order = np.ascontiguousarray(keys).argsort(kind="quicksort")
        values = values[order]

    # _calc_drawdown_series, NaN-free case (one non-finite sum makes every later one non-finite).
    cumulative = np.cumsum(values)
    if not np.isfinite(cumulative[-1]):
        return None
    with np.errstate(all="ignore"):
        high_value = np.maximum(0, np.maximum.accumulate(cumulative))
        drawdown = cumulative - high_value
        if starting_balance:
            cumulative_balance = starting_balance + cumulative
            max_balance = starting_balance + high_value
            drawdown_relative = (max_balance - cumulative_balance) / max_balance
        else:
            drawdown_relative = (high_value - cumulative) / high_value
    if drawdown_relative.dtype != _FLOAT64:
        return None
    # The zero row pd.concat puts in front of every column.
    cumulative = _with_zero_row(cumulative)
    high_value = _with_zero_row(high_value)
    drawdown = _with_zero_row(drawdown)
    drawdown_relative = _with_zero_row(drawdown_relative)

    idxmin = _nanargmax(drawdown_relative) if relative else _nanargmin(drawdown)
    high_idx = _nanargmax(high_value[: idxmin + 1])
    current_high_idx = _nanargmax(high_value[:-1])

    def date_at(row: int):  # profit_results.at[max(row - 1, 0), date_col]
        position = max(row - 1, 0)
        return date_array[int(order[position]) if order is not None else position]

    current_high_value = high_value[-1]
    return DrawDownResult(
        drawdown_abs=abs(drawdown[idxmin]),
        high_date=date_at(high_idx),
        low_date=date_at(idxmin),
        high_value=cumulative[high_idx],
        low_value=cumulative[idxmin],
        relative_account_drawdown=drawdown_relative[idxmin],
        current_high_date=date_at(current_high_idx),
        current_high_value=current_high_value,
        current_drawdown_abs=current_high_value - cumulative[-1],
        current_relative_account_drawdown=drawdown_relative[-1],
    )


def _with_zero_row(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values) + 1, dtype=values.dtype)
    out[0] = 0.0
    out[1:] = values
    return out


def _nanargmax(values: np.ndarray) -> int:
    """pandas' ``Series.idxmax()`` position: NaN filled with -inf, first occurrence."""
    mask = np.isnan(values)
    if mask.any():
        if mask.all():
            raise RuntimeError("all-NaN column")  # not reachable: the zero row is 0.0
        position = int(np.where(mask, -np.inf, values).argmax())
        return int((~mask).argmax()) if mask[position] else position
    return int(values.argmax())


def _nanargmin(values: np.ndarray) -> int:
    """pandas' ``Series.idxmin()`` position: NaN filled with +inf, first occurrence."""
    mask = np.isnan(values)
    if mask.any():
        if mask.all():
            raise RuntimeError("all-NaN column")  # not reachable: the zero row is 0.0
        position = int(np.where(mask, np.inf, values).argmin())
        return int((~mask).argmax()) if mask[position] else position
    return int(values.argmin())


@functools.cache
def _quicksort_matches_pandas(dtype: np.dtype) -> bool:
    """Whether ``DataFrame.sort_values`` orders equal dates of `dtype` like the argsort above.

    Probed once per dtype on frames with many ties, sorted and shuffled, of sizes that take
    numpy's insertion-sort and introsort branches.
    """
    rng = np.random.default_rng(20260901)
    pd_dtype = pd.Series(np.zeros(1, dtype=dtype)).dtype  # naive dtype of the same unit
    for size in (16, 17, 100, 1000):
        raw = np.sort(rng.integers(0, max(2, size // 4), size)).astype(dtype)
        for keys in (raw, rng.permutation(raw)):
            frame = pd.DataFrame({"date": pd.Series(keys, dtype=pd_dtype)})
            frame["row"] = np.arange(size)
            expected = frame.sort_values("date")["row"].to_numpy()
            got = frame["date"].array._values_for_argsort().argsort(kind="quicksort")
            if not np.array_equal(expected, got):
                return False
            tz_frame = frame.assign(date=frame["date"].dt.tz_localize("UTC"))
            expected = tz_frame.sort_values("date")["row"].to_numpy()
            got = tz_frame["date"].array._values_for_argsort().argsort(kind="quicksort")
            if not np.array_equal(expected, got):
                return False
    return True


# {version: fingerprint} of freqtrade.data.metrics:calculate_max_drawdown for every release
# 2025.1 .. 2026.9 whose fingerprint equals 2026.9's. Produced with the functions of
# scripts/collect_fingerprints.py (list_versions, WheelSource, locate). The replacement also
# reimplements `_calc_drawdown_series` and builds the module's `DrawDownResult`: in every release
# listed their sources equal 2026.9's too (`_calc_drawdown_series` 3479ac7bb2f36ebf,
# `DrawDownResult` 0213d7871f964bc0). Excluded: 2025.1 .. 2025.10 (the zero row of
# `_calc_drawdown_series` and the `.at[max(i - 1, 0)]` reads came in 2025.11).
FINGERPRINTS: dict[str, str] = {
    "2025.11": "8b608f74ad436f30",
    "2025.11.1": "8b608f74ad436f30",
    "2025.11.2": "8b608f74ad436f30",
    "2025.12": "8b608f74ad436f30",
    "2026.1": "8b608f74ad436f30",
    "2026.2": "8b608f74ad436f30",
    "2026.3": "8b608f74ad436f30",
    "2026.4": "8b608f74ad436f30",
    "2026.5": "8b608f74ad436f30",
    "2026.5.1": "8b608f74ad436f30",
    "2026.6": "8b608f74ad436f30",
    "2026.7": "8b608f74ad436f30",
    "2026.8": "8b608f74ad436f30",
    "2026.9": "8b608f74ad436f30",
}


def _drawdown_variants(balance: float) -> list[tuple[str, dict[str, Any]]]:
    """The argument sets Freqtrade's reports, hyperopt losses and RPC call it with."""
    return [
        ("profit_abs", {"value_col": "profit_abs"}),
        ("profit_abs, starting_balance", {"value_col": "profit_abs", "starting_balance": balance}),
        ("relative", {"value_col": "profit_abs", "starting_balance": balance, "relative": True}),
        ("profit_ratio", {"value_col": "profit_ratio"}),
    ]


def verify_max_drawdown(subject: Any, inputs: Any) -> Iterator[Any]:
    """``freqtrade-opt verify``: on the trades of all pairs and of each pair, with the argument
    sets Freqtrade's reports and hyperopt losses use."""
    if (problem := inputs.trades_problem()) is not None:
        yield subject.skip(problem)
        return
    for pair, trades in inputs.trade_scopes():
        for variant, kwargs in _drawdown_variants(inputs.starting_balance):
            compared = subject.compare(trades, label="trades after the call", **kwargs)
            yield subject.check(pair, variant, compared.status)


def _bench_setup() -> tuple[tuple, dict]:
    from freqtrade_opt_plugin.offline.datagen import synthetic_trades

    return (synthetic_trades(2000),), {"value_col": "profit_abs", "starting_balance": 1000}


OPTIMIZATION = Optimization(
    name="max_drawdown",
    target=_TARGET,
    factory=factory,
    tier=OptimizationLevel.STANDARD,
    fingerprints=FINGERPRINTS,
    description=(
        "Computes the drawdown statistics with the same numpy operations on the column arrays "
        "instead of building, concatenating and indexing pandas frames."
    ),
    default_percentage=100,
    performance_threshold=0.5,
    # The original's contract: ValueError("Trade dataframe empty.") for no trades, which the
    # report and hyperopt-loss callers catch (every pair without trades raises it).
    propagates=(ValueError,),
    mutates_arguments=False,
    verify_case=VerifyCase(verify_max_drawdown, planned=lambda inputs: (1 + len(inputs.pairs)) * 4),
    bench_case=BenchCase(_bench_setup, description="2000 trades, report arguments"),
)
