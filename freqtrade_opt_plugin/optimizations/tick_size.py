"""Vectorized `get_tick_size_over_time`: significant decimals without formatting every price.

The original renders each price with ``format_float_positional(x, precision=14, unique=False,
fractional=False, trim="-")`` (the exact binary value rounded half-even to 14 significant digits,
trailing zeros and point trimmed) and counts the digits after the point up to the last non-zero
one (``NaN`` when there is none). That count depends only on ``|x|``, and is computed in numpy:

* ``x`` NaN, infinite, zero or ``|x| >= 1e13``: the rendering has no fractional digit -> ``NaN``.
* otherwise, with ``k = 13 - floor(log10|x|)`` (so that ``x * 10**k`` has 14 integer digits) and
  ``M = rint(x * 10**k)`` (one or two exact powers of ten, relative error ``<= 2.3e-16``), the
  14-digit rendering is ``M * 10**-k`` whenever either check below proves it, and the count is
  ``k - trailing_zeros(M)`` (``NaN`` if not positive):

  - *near check*: ``1e13 < M < 1e14`` and ``|x * 10**k - M| < 0.5`` for certain (the computed
    distance leaves room for the product's rounding error); at ``M == 1e13`` only a distance below
    0.05 is accepted, which also covers ``x`` just below a power of ten (the rendering carries).
  - *exact check*: ``k <= 22``, ``M < 1e14`` and ``M / 10**k == x``: ``x`` is then the nearest
    double to a decimal with at most 14 significant digits, so that decimal is what is printed.

  Any value neither check proves (very small ``|x|``, products too close to a rounding tie, a
  misjudged decade) is formatted per value exactly as the original does. Decimal prices, however
  they were computed (``0.1 + 0.2`` included), pass the near check.

Counts are computed once for the four price columns, the count columns get the original's dtypes
(``int64`` without ``NaN``, else ``float64``; probed from pandas' string handling), and the monthly
maximum is resampled with the same pandas calls as the original. The input frame is modified only
after everything is computed. Inputs outside that model (empty frame, duplicate columns, non-numpy
price dtypes, a ``date`` column that is not datetime64, ...) are delegated to the original.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy import format_float_positional

from freqtrade_opt_plugin.optimizations.verified import VERIFIED
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


_TARGET_MODULE = "freqtrade.data.btanalysis.historic_precision"
_TARGET = f"{_TARGET_MODULE}:get_tick_size_over_time"
_PRICES = ("open", "high", "low", "close")
_FRACTION = re.compile(r"\.(\d*[1-9])")
_POW10 = 10.0 ** np.arange(23)  # exactly representable up to 1e22
_MAX_K = 44  # two exact factors of at most 1e22
_SIGNIFICANT = 1e13  # x * 10**k lies in [1e13, 1e14): 14 significant digits
_NEAR_TOL = {False: 0.49, True: 0.47}  # one rounding (error <= 2**-7) or two (error <= 0.0223)
_CARRY_TOL = 0.02  # at M == 1e13: distance + error < 0.05 (half a unit of the decade below)
_DTYPE_CACHE: dict[tuple, tuple[np.dtype, np.dtype] | None] = {}


def get_tick_size_over_time(candles: pd.DataFrame) -> pd.Series:
    """
    Calculate the number of significant digits for candles over time.
    It's using the Monthly maximum of the number of significant digits for each month.
    Same result and same added columns as Freqtrade's original (see the module docstring).
    :param candles: DataFrame with OHLCV data
    :return: Series with the average number of significant digits for each month
    """
    count_dtypes = _count_dtypes()
    if count_dtypes is None or not _supported(candles):
        return _original()(candles)
    no_nan_dtype, nan_dtype = count_dtypes

    n = len(candles)
    prices = [candles[col].to_numpy() for col in _PRICES]
    floats = [arr for arr in prices if arr.dtype.kind == "f"]
    counts_flat = _fraction_digits(np.concatenate(floats).astype(np.float64, copy=False))
    counts: dict[str, np.ndarray] = {}
    position = 0
    for col, arr in zip(_PRICES, prices, strict=True):
        if arr.dtype.kind == "f":
            values = counts_flat[position : position + n]
            position += n
        else:  # integers and booleans print without a point
            values = np.full(n, np.nan)
        if np.isnan(values).any():
            counts[col] = values.astype(nan_dtype)
        else:
            counts[col] = values.astype(no_nan_dtype)

    order = ("open", "close", "high", "low")  # the original's max order (irrelevant for max)
    if all(counts[col].dtype == np.int64 for col in order):
        max_count = np.max(np.stack([counts[col] for col in order]), axis=0)
    else:
        max_count = np.fmax.reduce(np.stack([counts[col].astype(np.float64) for col in order]))

    monthly = candles[["date"]]
    monthly = monthly.assign(max_count=max_count)
    candles1 = monthly.set_index("date", drop=True)
    monthly_count_avg1 = candles1["max_count"].resample("MS").max()
    result = 1 / 10**monthly_count_avg1

    for col in _PRICES:
        candles[f"{col}_count"] = counts[col]
    candles["max_count"] = max_count
    return result


def _fraction_digits(x: np.ndarray) -> np.ndarray:
    """Digits after the point in the 14-significant-digit rendering of each value (NaN: none)."""
    out = np.full(x.shape, np.nan)
    ax = np.abs(x)
    with np.errstate(all="ignore"):
        # NaN, inf, 0 and |x| >= 1e13 print without fractional digits: they stay NaN
        idx = np.flatnonzero((ax > 0) & (ax < _SIGNIFICANT))
        if idx.size == 0:
            return out
        v = ax[idx]
        k = 13 - np.floor(np.log10(v)).astype(np.int64)
        in_range = (k >= 1) & (k <= _MAX_K)
        k = np.clip(k, 1, _MAX_K)
        first = np.minimum(k, 22)
        second = k - first
        y = v * _POW10[first]
        two_step = second > 0
        if two_step.any():
            y = np.where(two_step, y * _POW10[second], y)
        m = np.rint(y)
        distance = np.abs(y - m)
        tol = np.where(two_step, _NEAR_TOL[True], _NEAR_TOL[False])
        near = (m > _SIGNIFICANT) & (m < 1e14) & (distance <= tol)
        near |= (m == _SIGNIFICANT) & (distance <= _CARRY_TOL)
        exact = (~two_step) & (m >= 1) & (m < 1e14) & (m / _POW10[first] == v)
        proven = in_range & (near | exact)

        digits = (k - _trailing_zeros(np.where(proven, m, 1.0))).astype(np.float64)
        digits[digits <= 0] = np.nan
        out[idx[proven]] = digits[proven]

    for i in idx[~proven]:
        out[i] = _fraction_digits_slow(float(x[i]))
    return out


def _trailing_zeros(m: np.ndarray) -> np.ndarray:
    """Trailing decimal zeros of positive integers below 1e14 held as float64 (exact ops only)."""
    zeros = np.zeros(m.shape, dtype=np.int64)
    for power in (8, 4, 2, 1):  # greedy binary search: up to 15 zeros
        divisor = _POW10[power]
        divisible = np.fmod(m, divisor) == 0
        m = np.where(divisible, m / divisor, m)
        zeros += divisible * power
    return zeros


def _fraction_digits_slow(value: float) -> float:
    """The original's per-value formatting and regex, for values the fast path cannot prove."""
    text = format_float_positional(value, precision=14, unique=False, fractional=False, trim="-")
    match = _FRACTION.search(text)
    return float(len(match.group(1))) if match else np.nan


def _supported(candles: object) -> bool:
    """Whether the fast path models this input exactly (otherwise the original runs)."""
    if not isinstance(candles, pd.DataFrame) or len(candles) == 0:
        return False  # the original raises AttributeError (.str on a float Series) when empty
    columns = candles.columns
    if isinstance(columns, pd.MultiIndex) or not columns.is_unique:
        return False
    if any(col not in columns for col in (*_PRICES, "date")):
        return False
    dtypes = candles.dtypes
    for col in _PRICES:
        dtype = dtypes[col]
        if not isinstance(dtype, np.dtype) or dtype.kind not in "fiub":
            return False
        if dtype.kind == "f" and dtype.itemsize > 8:
            return False  # longdouble scalars format with their own precision
    date = dtypes["date"]
    return (isinstance(date, np.dtype) and date.kind == "M") or isinstance(
        date, pd.DatetimeTZDtype
    )


def _count_dtypes() -> tuple[np.dtype, np.dtype] | None:
    """dtypes of the original's count column without and with NaN (None: not int64/float64).

    They come from pandas' string inference and storage settings, so they are probed once per
    setting with the original's own pipeline.
    """
    key = (_option("future.infer_string"), _option("mode.string_storage"))
    if key not in _DTYPE_CACHE:
        found = []
        for sample in ([0.5], [0.5, 1.0]):
            rendered = pd.Series(sample).apply(
                format_float_positional, precision=14, unique=False, fractional=False, trim="-"
            )
            found.append(rendered.str.extract(r"\.(\d*[1-9])")[0].str.len().dtype)
        expected = (np.dtype(np.int64), np.dtype(np.float64))
        _DTYPE_CACHE[key] = expected if tuple(found) == expected else None
    return _DTYPE_CACHE[key]


def _option(name: str) -> object:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.get_option(name)
    except (KeyError, pd.errors.OptionError):
        return None


def _original() -> Callable[[pd.DataFrame], pd.Series]:
    """Freqtrade's own function, looked up at call time below any installed wrapper."""
    module = importlib.import_module(_TARGET_MODULE)
    func = inspect.unwrap(module.get_tick_size_over_time)
    if func is get_tick_size_over_time:
        raise RuntimeError(f"the original {_TARGET} is not reachable through __wrapped__")
    return func


OPTIMIZATION = Optimization(
    name="tick_size",
    target=_TARGET,
    replacement=get_tick_size_over_time,
    tier=OptimizationLevel.CONSERVATIVE,
    fingerprints=VERIFIED[_TARGET],
    description=(
        "Counts the significant decimals of OHLC prices with exact numpy arithmetic instead of "
        "formatting every price to a string and matching a regex (per-value formatting only "
        "for values the arithmetic cannot prove)"
    ),
    default_percentage=100,
    performance_threshold=0.5,
)
