"""Content hashing: every difference that can change a result changes the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash


DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def candles() -> pd.DataFrame:
    return pd.read_feather(DATA / "ETH_BTC-5m.feather")


def seed_key(frame: pd.DataFrame) -> str:
    """The seed's key: shape + columns + first 5 rows (what this package replaced)."""
    return f"{frame.shape}|{list(frame.columns)}|{frame.head(5).to_numpy().tolist()}"


def test_frames_differing_only_in_row_6_collide_in_the_seed_key_but_not_here(candles):
    changed = candles.copy()
    changed.loc[5, "close"] = changed.loc[5, "close"] + 1e-9  # row 6
    assert seed_key(changed) == seed_key(candles)  # the seed returned a stale entry here
    assert content_hash(changed) != content_hash(candles)


def test_last_row_and_single_cell_changes(candles):
    base = content_hash(candles)
    for row in (0, len(candles) // 2, len(candles) - 1):
        for column in ("open", "volume", "date"):
            changed = candles.copy()
            if column == "date":
                changed.loc[row, column] += pd.Timedelta(minutes=1)
            else:
                changed.loc[row, column] = np.nextafter(changed.loc[row, column], np.inf)
            assert content_hash(changed) != base, (row, column)


def test_frames_differing_only_in_a_column_name(candles):
    assert content_hash(candles.rename(columns={"volume": "Volume"})) != content_hash(candles)
    # hash_pandas_object ignores names (Streamlit's stale-frame bug): not this hash
    assert (pd.util.hash_pandas_object(candles.rename(columns={"volume": "vol"})).equals(
        pd.util.hash_pandas_object(candles)))


def test_frames_differing_only_in_dtype():
    ints = pd.DataFrame({"a": np.array([1, 2, 3], dtype=np.int64)})
    assert content_hash(ints) != content_hash(ints.astype(np.int32))
    assert content_hash(ints) != content_hash(ints.astype(np.float64))
    assert content_hash(ints) != content_hash(ints.astype("Int64"))
    floats = pd.DataFrame({"a": [1.0, 2.0]})
    assert content_hash(floats) != content_hash(floats.astype(np.float32))
    dates = pd.DataFrame({"d": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)})
    assert content_hash(dates) != content_hash(dates.astype("datetime64[ms, UTC]"))
    assert content_hash(dates) != content_hash(dates.astype("datetime64[ns, Europe/Berlin]"))


def test_frames_differing_only_in_the_index(candles):
    shifted = candles.copy()
    shifted.index = shifted.index + 1
    assert content_hash(shifted) != content_hash(candles)
    named = candles.copy()
    named.index.name = "row"
    assert content_hash(named) != content_hash(candles)
    as_int64 = candles.copy()
    as_int64.index = pd.Index(np.arange(len(candles)), dtype=np.int64)  # same labels, not Range
    assert content_hash(as_int64) != content_hash(candles)


def test_other_differences():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert content_hash(frame) != content_hash(frame[["b", "a"]])  # column order
    tagged = frame.copy()
    tagged.attrs["source"] = "x"
    assert content_hash(tagged) != content_hash(frame)  # attrs
    assert content_hash(frame["a"]) != content_hash(frame["a"].rename("z"))  # Series name
    assert content_hash(pd.DataFrame({1: [1]})) != content_hash(pd.DataFrame({"1": [1]}))
    assert content_hash(pd.Series([None, "a"], dtype=object)) != content_hash(
        pd.Series([np.nan, "a"], dtype=object))
    assert content_hash(pd.Series(["a", None], dtype="string")) != content_hash(
        pd.Series(["a", ""], dtype="string"))
    assert content_hash(np.arange(6).reshape(2, 3)) != content_hash(np.arange(6).reshape(3, 2))
    assert content_hash(0.0) != content_hash(-0.0)
    assert len({content_hash(v) for v in (1, 1.0, True, "1", [1], (1,), {1})}) == 7
    assert content_hash({"a": 1, "b": 2}) != content_hash({"b": 2, "a": 1})  # never a wrong hit


def test_equal_content_gives_equal_hashes(candles):
    assert content_hash(candles) == content_hash(pd.read_feather(DATA / "ETH_BTC-5m.feather"))
    assert content_hash(candles) == content_hash(candles.copy(deep=True))
    assert content_hash({1, 2, 3}) == content_hash({3, 2, 1})


def test_objects_without_canonical_content_are_refused():
    class Thing:
        pass

    with pytest.raises(Unhashable):
        content_hash(Thing())
    with pytest.raises(Unhashable):
        content_hash(pd.Series([Thing()], dtype=object))
    loop: list = []
    loop.append(loop)
    with pytest.raises(Unhashable):
        content_hash(loop)
    assert content_hash(Thing(), fallback=lambda v: "thing") == content_hash(
        Thing(), fallback=lambda v: "thing")


frames = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n),
        st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n),
        st.lists(st.text(max_size=3) | st.none(), min_size=n, max_size=n),
        st.integers(0, n - 1),
        st.sampled_from(["f", "i", "s"]),
    )
)


@settings(max_examples=150, deadline=None)
@given(frames)
def test_any_single_cell_change_changes_the_hash(data):
    floats, ints, texts, row, column = data
    frame = pd.DataFrame({"f": floats, "i": ints, "s": pd.Series(texts, dtype="string")})
    before = content_hash(frame)
    assert content_hash(frame.copy()) == before
    changed = frame.copy()
    if column == "f":
        changed.loc[row, "f"] = 1.5 if floats[row] != 1.5 else 2.5
    elif column == "i":
        changed.loc[row, "i"] = ints[row] + 1
    else:
        changed.loc[row, "s"] = (texts[row] or "") + "x"
    assert content_hash(changed) != before
