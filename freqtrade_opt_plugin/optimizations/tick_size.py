"""Vectorized `get_tick_size_over_time`: significant decimals without formatting every price.

The original renders each price with ``format_float_positional(x, precision=14, unique=False,
fractional=False, trim="-")`` (the exact binary value rounded half-even to 14 significant digits,
trailing zeros and point trimmed) and counts the digits after the point up to the last non-zero
one (``NaN`` when there is none). That count depends only on ``|x|`` and is computed in numpy:

* ``x`` NaN, infinite, zero or ``|x| >= 1e13``: no fractional digit is printed -> ``NaN``.
* otherwise, with ``k = 13 - floor(log10|x|)`` (``x * 10**k`` has 14 integer digits) and
  ``M = rint(x * 10**k)`` (scaled by one or two exact powers of ten), the rendering is
  ``M * 10**-k`` whenever one of these checks proves it, and the count is
  ``k - trailing_zeros(M)`` (``NaN`` if not positive):

  - *near*: ``1e13 < M <= 1e14`` and the computed ``|x * 10**k - M|`` is so far below 0.5 that
    the product's rounding error (at most 0.0223) cannot reach a tie (``M == 1e14``: the rendering
    carries to the next power of ten); at ``M == 1e13``, where ``x`` may lie just below a power of
    ten, a distance below 0.05 is required instead.
  - *exact*: ``k <= 22``, ``M < 1e14`` and ``M / 10**k == x``: ``x`` is the nearest double to a
    decimal of at most 14 significant digits, so that decimal is what is printed.

  Values neither check proves (``|x| < ~1e-31``, digits beyond the 14th too close to a tie) are
  formatted one by one exactly as the original does. Exchange prices, even after arithmetic such
  as ``0.1 + 0.2``, pass the near check.

The count columns get the original's dtypes (``int64`` without ``NaN``, else ``float64``, as probed
from pandas' string handling), ``max_count`` the dtype of ``DataFrame.max(axis=1)``, and the monthly
maximum is resampled with the same pandas calls as the original. The input frame is modified only
after everything is computed. Inputs outside this model (empty frame, duplicate columns, non-numpy
price dtypes, a ``date`` column that is not datetime64, ...) are delegated to ``wrapped`` (what
runs without this optimization: Freqtrade's original).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
from numpy import format_float_positional

from freqtrade_opt_plugin.optimizations.verified import VERIFIED
from freqtrade_opt_plugin.registry import (
    BenchCase,
    Optimization,
    OptimizationLevel,
    VerifyCase,
)


_TARGET_MODULE = "freqtrade.data.btanalysis.historic_precision"
_TARGET = f"{_TARGET_MODULE}:get_tick_size_over_time"
_PRICES = ("open", "high", "low", "close")
_FRACTION = re.compile(r"\.(\d*[1-9])")
_POW10 = np.array([float(f"1e{j}") for j in range(23)])  # exactly representable up to 1e22
_EXP_OFFSET = 310  # _POWERS[j + _EXP_OFFSET] is the double nearest 10**j, |j| <= 310
_POWERS = np.array([float(f"1e{j}") for j in range(-_EXP_OFFSET, _EXP_OFFSET + 1)])
_MAX_K = 44  # two exact factors of at most 1e22
_SIGNIFICANT = 1e13  # x * 10**k in [1e13, 1e14): 14 significant digits before the point
_NEAR_TOL = {False: 0.49, True: 0.47}  # one rounding (error <= 2**-7) or two (error <= 0.0223)
_CARRY_TOL = 0.02  # at M == 1e13: distance + error < 0.05 (half a unit of the decade below)
_E0 = ((np.arange(2048) - 1023) * 78913) >> 18  # floor(e2 * log10(2)) (Ryu), exact here
_K_BY_EXPONENT = 13 - _E0  # by biased binary exponent: k if the decade is e0
_SCALE_BY_EXPONENT = np.where(
    (_K_BY_EXPONENT >= 1) & (_K_BY_EXPONENT <= 22), _POW10[np.clip(_K_BY_EXPONENT, 0, 22)], np.nan
)
# biased binary exponent of 10**z -> z for z <= 15 (other entries are never looked up)
_ZEROS_BY_EXPONENT = np.full(2048, -(10**6), dtype=np.int64)
_ZEROS_BY_EXPONENT[(_POW10[:16].view(np.int64) >> 52)] = np.arange(16)
_CHUNK = 16384  # elements per chunk: 128 KiB float64 temporaries, recycled by malloc
_DTYPE_CACHE: dict[tuple, tuple[np.dtype, np.dtype] | None] = {}


TickSize = Callable[[pd.DataFrame], pd.Series]


def factory(wrapped: TickSize) -> TickSize:
    """The replacement in front of `wrapped` (which gets the inputs outside the fast model)."""

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
            return wrapped(candles)
        return _tick_size(candles, *count_dtypes)

    return get_tick_size_over_time


def _tick_size(candles: pd.DataFrame, no_nan_dtype: np.dtype, nan_dtype: np.dtype) -> pd.Series:
    """The fast path on a supported frame (see the module docstring)."""

    counts: dict[str, np.ndarray] = {}
    for col in _PRICES:
        values = candles[col].to_numpy()
        if values.dtype.kind == "f":
            digits = _fraction_digits(values.astype(np.float64, copy=False))
        else:  # integers and booleans print without a point
            digits = np.full(len(values), np.nan)
        dtype = nan_dtype if np.isnan(digits).any() else no_nan_dtype
        counts[col] = digits.astype(dtype, copy=False)
    # DataFrame.max(axis=1): NaN skipped, int64 only if every column is int64, else float64
    max_count = reduce(np.fmax, [counts[col] for col in ("open", "close", "high", "low")])

    # candles.set_index("date")["max_count"]: set_index builds Index(candles["date"], name="date")
    dates = pd.Index(candles["date"], name="date")
    result = 1 / 10 ** _monthly_max(max_count, dates)

    # a Series on the frame's own index is stored without a copy (like the original's Series)
    for col in _PRICES:
        candles[f"{col}_count"] = pd.Series(counts[col], index=candles.index, copy=False)
    candles["max_count"] = pd.Series(max_count, index=candles.index, copy=False)
    return result


def _monthly_max(max_count: np.ndarray, dates: pd.DatetimeIndex) -> pd.Series:
    """``Series(max_count, index=dates, name="max_count").resample("MS").max()``.

    For sorted naive or UTC dates without NaT, each calendar month is first reduced to its
    maximum (``fmax`` skips NaN like ``max``), kept at the month's last timestamp, plus the very
    first timestamp: resample then sees the same first and last timestamps, the same months and
    the same maxima (and dtype) on a few rows instead of every candle.
    """
    if (
        len(dates) > 1
        and (dates.tz is None or str(dates.tz) == "UTC")
        and not dates.hasnans
        and dates.is_monotonic_increasing
    ):
        months = dates.asi8.view(f"M8[{dates.unit}]").astype("M8[M]")
        ends = np.flatnonzero(months[1:] != months[:-1])
        starts = np.concatenate(([0], ends + 1))
        maxima = np.fmax.reduceat(max_count, starts)
        positions = np.concatenate(([0], ends, [len(dates) - 1]))
        values = np.concatenate((maxima[:1], maxima))
        return pd.Series(values, index=dates[positions], name="max_count").resample("MS").max()
    return pd.Series(max_count, index=dates, name="max_count").resample("MS").max()


def _fraction_digits(x: np.ndarray) -> np.ndarray:
    """Digits after the point in the 14-significant-digit rendering of each value (NaN: none).

    Works in chunks: small temporaries are recycled by the allocator instead of page-faulting
    fresh memory for every intermediate array (which costs more than the arithmetic).
    """
    out = np.empty(x.shape, dtype=np.float64)
    for start in range(0, x.size, _CHUNK):
        _fraction_digits_chunk(x[start : start + _CHUNK], out[start : start + _CHUNK])
    return out


def _fraction_digits_chunk(x: np.ndarray, out: np.ndarray) -> None:
    """`_fraction_digits` of one chunk, written into `out`.

    Main path: the near check with one scaling factor ``10**(13 - e0)`` looked up by the binary
    exponent ``e2`` of ``|x|``, ``e0 = floor(e2 * log10(2))``, so the decade is ``e0`` or
    ``e0 + 1`` (then the product is divided by 10: two roundings, error <= 0.0223). Values it
    does not prove go to `_fraction_digits_careful`.
    """
    ax = np.abs(x)
    with np.errstate(all="ignore"):
        biased_exponent = ax.view(np.int64) >> 52  # sign bit clear: 0 .. 2047
        y = ax * _SCALE_BY_EXPONENT[biased_exponent]  # NaN where 13 - e0 is not in [1, 22]
        big = y >= 1e14
        np.divide(y, 10.0, out=y, where=big)
        k = _K_BY_EXPONENT[biased_exponent] - big
        m = np.rint(y)
        near = np.abs(y - m) <= _NEAR_TOL[True]
        near &= m > _SIGNIFICANT  # also excludes 0, NaN, inf
        near &= m <= 1e14  # 1e14: the rendering carries to the next power of ten
        near &= k > 0  # |x| >= 1e13 prints no fractional digit
        all_near = near.all()
        digits = _fraction_digits_of(m if all_near else np.where(near, m, 1.0), k)
        valid = (digits > 0) if all_near else (near & (digits > 0))
        np.copyto(out, np.where(valid, digits, np.nan))
    if all_near:
        return
    # NaN, inf, 0 and |x| >= 1e13 print without fractional digits: they stay NaN
    with np.errstate(invalid="ignore"):
        rest = np.flatnonzero(~near & (ax > 0) & (ax < _SIGNIFICANT))
    if rest.size:
        out[rest] = _fraction_digits_careful(x[rest])


def _fraction_digits_careful(x: np.ndarray) -> np.ndarray:
    """`_fraction_digits` for finite non-zero ``|x| < 1e13`` the main path did not prove.

    Decade from the decimal powers, scaling by one or two exact powers of ten (``k <= 44``), the
    near check (with the carry case at ``M == 1e13``) or the exact check, and the original's
    per-value formatting for whatever remains.
    """
    ax = np.abs(x)
    with np.errstate(all="ignore"):
        e10 = (((ax.view(np.int64) >> 52) - 1023) * 78913) >> 18
        e10 += ax >= _POWERS[e10 + (_EXP_OFFSET + 1)]
        e10 -= ax < _POWERS[e10 + _EXP_OFFSET]
        k = 13 - e10
        in_range = (k >= 1) & (k <= _MAX_K)
        k = np.where(in_range, k, 13)
        first = np.minimum(k, 22)
        y = ax * _POW10[first]
        two_step = k > 22
        y = np.where(two_step, y * _POW10[k - first], y)
        m = np.rint(y)
        distance = np.abs(y - m)
        tol = np.where(two_step, _NEAR_TOL[True], _NEAR_TOL[False])
        near = (m > _SIGNIFICANT) & (m <= 1e14) & (distance <= tol)
        near |= (m == _SIGNIFICANT) & (distance <= _CARRY_TOL)
        exact = (~two_step) & (m >= 1) & (m < 1e14) & (m / _POW10[first] == ax)
        proven = in_range & (near | exact)
        digits = _fraction_digits_of(np.where(proven, m, 1.0), k)
        out = np.where(proven & (digits > 0), digits, np.nan)
    for i in np.flatnonzero(~proven):
        out[i] = _fraction_digits_slow(float(x[i]))
    return out


def _fraction_digits_of(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``k`` minus the trailing decimal zeros of ``m`` (integers in [1, 1e14] as float64).

    ``q = m / 10**p`` is exact when divisible; otherwise its distance to an integer (at least
    ``10**-p``) exceeds its rounding error (below ``0.012 * 10**-p``), so ``q == rint(q)`` tests
    divisibility exactly. The zeros removed, ``m / reduced`` is exactly ``10**zeros``, whose
    binary exponent identifies ``zeros``.
    """
    reduced = m
    for power in (8, 4, 2, 1):  # greedy binary search: up to 15 zeros
        q = reduced / _POW10[power]
        reduced = np.where(q == np.rint(q), q, reduced)
    exponent = (m / reduced).view(np.int64) >> 52
    return k - _ZEROS_BY_EXPONENT[exponent]


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
    return (isinstance(date, np.dtype) and date.kind == "M") or isinstance(date, pd.DatetimeTZDtype)


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
        with warnings.catch_warnings():  # future.infer_string is deprecated in pandas 3
            warnings.simplefilter("ignore")
            return pd.get_option(name)
    except (KeyError, pd.errors.OptionError):
        return None


def verify_tick_size(subject: Any, inputs: Any) -> Iterator[Any]:
    """``freqtrade-opt verify``: per pair, on the loaded candles (and the columns added)."""
    for pair in inputs.pairs:
        compared = subject.compare(inputs.candles[pair], label="candles after the call")
        if compared.expected.error is None:  # the stock frames ohlcv_as_lists is checked on
            inputs.stock_frames.setdefault(pair, compared.expected_args[0][0])
        yield subject.check(pair, "", compared.status)


def _bench_setup() -> tuple[tuple, dict]:
    """30 days of generated 5m BTC/USDT candles (the call adds columns: fresh each time)."""
    from freqtrade_opt_plugin.offline.datagen import generate_candles

    return (generate_candles("BTC/USDT", days=30),), {}


OPTIMIZATION = Optimization(
    name="tick_size",
    target=_TARGET,
    factory=factory,
    tier=OptimizationLevel.CONSERVATIVE,
    fingerprints=VERIFIED[_TARGET],
    description=(
        "Counts the significant decimals of OHLC prices with exact numpy arithmetic instead of "
        "formatting every price to a string and matching a regex (per-value formatting only "
        "for values the arithmetic cannot prove)"
    ),
    default_percentage=100,
    performance_threshold=0.5,
    verify_case=VerifyCase(verify_tick_size, planned=lambda inputs: len(inputs.pairs)),
    bench_case=BenchCase(_bench_setup, repeat=9, description="30 days of 5m candles"),
)
