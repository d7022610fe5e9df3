"""The row schedule against a literal walk of Freqtrade's generator bookkeeping
(``validate_row``: a pair's next row is taken on the first step whose time reached its date)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin.optimizations.fast_loop.timeline import (
    DataNotSupported,
    build_timeline,
    schedule,
)


def walk(dates: list[int], times: list[int]) -> list[int]:
    """Step of each row as ``time_pair_generator`` + ``validate_row`` process them."""
    index, steps = 0, [len(times)] * len(dates)
    for k, now in enumerate(times):
        if index < len(dates) and not dates[index] > now:
            steps[index] = k
            index += 1
    return steps


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 60), max_size=40), st.integers(0, 40))
def test_schedule_equals_the_generator_walk(offsets, steps):
    unit = 300_000_000_000  # 5 minutes in ns
    start = 1_700_000_000_000_000_000
    times = [start + k * unit for k in range(steps)]
    # dates on and off the grid, unsorted and repeated
    dates = [start + o * unit + (o % 3) * 7 for o in offsets]
    got = schedule(np.array(dates, dtype=np.int64), np.array(times, dtype=np.int64))
    expected = walk(dates, times)
    assert [min(int(s), steps) for s in got] == expected


def _rows(dates: list[datetime], entries: list[int]) -> list[list]:
    return [[pd.Timestamp(d), 1.0, 1.0, 1.0, 1.0, e, 0, 0, 0, None, None]
            for d, e in zip(dates, entries, strict=True)]


def test_timeline_rows_counts_signals_and_first_appearance_order():
    tf = timedelta(minutes=5)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    times = [start + tf * (k + 1) for k in range(6)]
    data = {
        "A/USDT": _rows([start + tf * k for k in (3, 4, 6)], [0, 1, 1]),  # starts at step 2
        "B/USDT": _rows([start + tf * k for k in (1, 2)], [1, 0]),  # ends after step 1
    }
    tl = build_timeline(data, times, tf, lambda row: "long" if row[5] == 1 else None, False)
    a, b = tl.pairs
    assert list(a.row_at) == [-1, -1, 0, 1, -1, 2]
    assert list(a.count) == [0, 0, 1, 2, 2, 3]
    assert list(b.row_at) == [0, 1, -1, -1, -1, -1]
    assert a.signals == {3: "long", 5: "long"} and b.signals == {0: "long"}
    assert tl.signal_at == {0: [1], 3: [0], 5: [0]}
    assert tl.first_order == [1, 0]  # B's first row comes first
    assert list(tl.last_any) == [0, 1, 2, 3, 3, 5]
    assert a.aligned and b.aligned and a.last_row == 2


def test_naive_dates_are_refused():
    tf = timedelta(minutes=5)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    data = {"A/USDT": [[pd.Timestamp("2025-01-01 00:05"), 1, 1, 1, 1, 0, 0, 0, 0, None, None]]}
    with pytest.raises(DataNotSupported, match="time zone"):
        build_timeline(data, [start + tf], tf, lambda row: None, False)
