"""Backtesting's per-pair row lists kept as columns, for the fast trade loop.

``Backtesting._get_ohlcv_as_lists`` returns, per pair, one list per candle (``HEADERS``: date,
open, high, low, close, signals, tags). Building those lists (and a ``pd.Timestamp`` per date)
costs more than the fast loop's whole walk, which reads only a few rows. When the loop asks for
it (`wanted`), the ``ohlcv_lists`` optimization returns `ColumnRows` instead: the same columns
with the same element objects, and a row is built on first access (then kept, so a row index
always gives the same list object, as in the original). Readers that want a whole column
(`column`, `dates_ns`) take it without building rows; they accept plain row lists too.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


DATE_IDX = 0

_want = threading.local()


@contextmanager
def wanted() -> Iterator[None]:
    """Within this block (this thread), ``ohlcv_lists`` may return `ColumnRows`."""
    before = getattr(_want, "on", False)
    _want.on = True
    try:
        yield
    finally:
        _want.on = before


def take_wish() -> bool:
    """Whether the caller asked for `ColumnRows` (`wanted`); the wish is used up, so a nested
    conversion (e.g. from strategy code) gets plain lists."""
    wish = getattr(_want, "on", False)
    _want.on = False
    return wish


class ColumnRows(Sequence):
    """A pair's rows as columns: ``dates`` (a pandas DatetimeArray, whose items are the
    ``astype(object)`` Timestamps) and the other ``HEADERS`` columns as lists of objects."""

    __slots__ = ("_built", "columns", "dates")

    def __init__(self, dates: Any, columns: list[list]) -> None:
        if any(len(c) != len(dates) for c in columns):
            raise ValueError("ColumnRows: columns of different lengths")
        self.dates = dates
        self.columns = columns
        self._built: dict[int, list] = {}

    def __len__(self) -> int:
        return len(self.dates)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        if i < 0:
            i += len(self)
        row = self._built.get(i)
        if row is None:
            if not 0 <= i < len(self):
                raise IndexError("row index out of range")
            row = self._built[i] = [self.dates[i], *[c[i] for c in self.columns]]
        return row

    def __iter__(self) -> Iterator[list]:
        return (self[i] for i in range(len(self)))


def column(rows: Sequence[Sequence[Any]], idx: int) -> Sequence[Any]:
    """Column `idx` of a pair's rows (no rows built for `ColumnRows`)."""
    if isinstance(rows, ColumnRows):
        return rows.dates if idx == DATE_IDX else rows.columns[idx - 1]
    return [r[idx] for r in rows]


def dates_ns(rows: Sequence[Sequence[Any]]) -> np.ndarray:
    """Each row's ``Timestamp.value`` (integer nanoseconds); TypeError/AttributeError/
    OverflowError when a date is not a Timestamp. The caller checks time zones."""
    if isinstance(rows, ColumnRows):
        return np.asarray(rows.dates.as_unit("ns").asi8, dtype=np.int64)
    return np.fromiter((r[DATE_IDX].value for r in rows), dtype=np.int64, count=len(rows))


def first_date(rows: Sequence[Sequence[Any]]) -> Any:
    """The first row's date object (rows must not be empty)."""
    return rows.dates[0] if isinstance(rows, ColumnRows) else rows[0][DATE_IDX]
