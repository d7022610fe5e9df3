"""`column_rows.ColumnRows`: a pair's rows kept as columns, read like Freqtrade's row lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from freqtrade_opt_plugin.optimizations import column_rows
from freqtrade_opt_plugin.optimizations.column_rows import ColumnRows


def make(n: int = 4, unit: str = "ms") -> tuple[ColumnRows, list[list]]:
    dates = pd.date_range("2024-03-31 00:55", periods=n, freq="5min", tz="Europe/Berlin")
    array = pd.DatetimeIndex(dates).as_unit(unit).array
    columns = [[float(i) for i in range(n)], [i * 2 for i in range(n)], [None] * n]
    rows = [list(r) for r in zip(list(array.astype(object)), *columns, strict=True)]
    return ColumnRows(array, columns), rows


def test_rows_read_like_the_lists_they_stand_for():
    lazy, rows = make()
    assert len(lazy) == len(rows) and list(lazy) == rows
    assert lazy[-1] == rows[-1] and lazy[1:3] == rows[1:3] and lazy[::-2] == rows[::-2]
    for a, b in zip(lazy[0], rows[0], strict=True):
        assert type(a) is type(b) and repr(a) == repr(b)
    assert lazy[0][0].unit == rows[0][0].unit == "ms"
    assert lazy[2] is lazy[-2]  # one list object per row, as in the original
    with pytest.raises(IndexError):
        lazy[4]
    with pytest.raises(IndexError):
        lazy[-5]
    with pytest.raises(TypeError):
        lazy["0"]


def test_columns_and_dates_without_building_rows():
    lazy, rows = make()
    assert column_rows.column(lazy, 2) is lazy.columns[1]
    assert column_rows.column(rows, 2) == lazy.columns[1]
    assert list(column_rows.column(lazy, 0)) == [r[0] for r in rows]
    expected = np.array([r[0].value for r in rows], dtype=np.int64)
    assert np.array_equal(column_rows.dates_ns(lazy), expected)
    assert np.array_equal(column_rows.dates_ns(rows), expected)
    assert column_rows.first_date(lazy) == column_rows.first_date(rows) == rows[0][0]
    assert not lazy._built  # nothing above built a row


def test_columns_of_other_lengths_are_refused():
    lazy, _ = make()
    with pytest.raises(ValueError, match="lengths"):
        ColumnRows(lazy.dates, [[1.0] * 3])


def test_the_wish_is_per_thread_and_used_up_once():
    assert not column_rows.take_wish()
    with column_rows.wanted():
        assert column_rows.take_wish()
        assert not column_rows.take_wish()  # a nested conversion gets plain lists
    assert not column_rows.take_wish()
