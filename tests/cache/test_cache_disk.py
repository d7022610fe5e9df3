"""Serialization without pickle: exact round trips, refusals, and a planted pickle never runs."""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freqtrade_opt_plugin.cache.disk import (
    MAGIC,
    CorruptEntry,
    NotCacheable,
    SafeDisk,
    decode,
    encode,
    estimate_memory,
)
from freqtrade_opt_plugin.cache.hashing import content_hash


DATA = Path(__file__).resolve().parents[1] / "data"


def roundtrip(value):
    return decode(encode(value).payload)


@pytest.mark.parametrize("value", [
    pd.read_feather(DATA / "ETH_BTC-5m.feather"),
    pd.DataFrame({"f": [1.0, np.nan, -0.0], "s": ["a", None, "c"], "b": [True, False, True],
                  "i": pd.array([1, None, 3], dtype="Int64"), "c": pd.Categorical(["x", "y", "x"]),
                  "f32": np.array([1, 2, 3], dtype=np.float32),
                  "t": pd.to_datetime(["2020-01-01", "2020-01-02", None], utc=True)}),
    pd.DataFrame({"a": [1, 2]}, index=pd.DatetimeIndex(["2020-01-01", "2020-01-02"], freq="D")),
    pd.Series([1e-5, 1e-6], index=pd.date_range("2020", periods=2, freq="MS", tz="UTC")),
    pd.Series([1, 2], name=("a", 1)),
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.float32(1.5),
    {"a": (1, 2.0, None), "b": [float("nan"), float("inf"), -0.0], 3: "int key"},
    ("text", 7, False),
    (pd.DataFrame({"x": [1]}), {"meta": 1}, np.arange(3)),
    pd.DataFrame(np.ones((3, 3))),  # integer (Range) column labels
    pd.DataFrame({1: [1], "1": [2]}),  # mixed label types
    pd.DataFrame([[1, 2]], columns=["a", "a"]),  # duplicate labels
    # container cells (a backtest's "orders" column): stored as tagged JSON, not Arrow lists
    pd.DataFrame({"pair": ["A/B", "C/D", "E/F"],
                  "orders": [[{"amount": 1.5, "ft_is_entry": True, "id": None}],
                             [{"amount": -0.0, "cost": float("nan")}, {"tag": (1, "x")}], []],
                  "mixed": [{"k": [1, 2]}, None, "text"]}),
    pd.DataFrame(np.ones((2, 2)), columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")])),
])
def test_supported_values_round_trip_exactly(value):
    assert content_hash(roundtrip(value)) == content_hash(value)


def test_values_that_would_change_are_refused():
    class Thing:
        pass

    refused = [
        Thing(),
        pd.DataFrame({"o": pd.Series(["a", 1], dtype=object)}),  # Arrow would coerce or fail
        pd.DataFrame({"o": pd.Series(["a", None], dtype=object)}),  # None would become NaN
        np.array([Thing()], dtype=object),
        {1.5: (Thing(),)},
    ]
    for value in refused:
        with pytest.raises(NotCacheable):
            encode(value)


def sealed(body: bytes) -> bytes:
    """`body` with a valid header and checksum: what the parser itself must refuse."""
    return MAGIC + hashlib.sha256(body).digest() + body


@pytest.mark.parametrize("payload", [
    b"",
    b"garbage",
    MAGIC,
    MAGIC + b"J1",  # no checksum
    b"FTOPTC1J1",  # the earlier format without checksum
    sealed(b""),
    sealed(b"F" + b"\x05\x00\x00\x00{}"),
    sealed(b"J{not json"),
    sealed(b"N\x93NUMPY garbage"),
    sealed(b"T\x02\x00\x00\x00" + b"\xff" * 16),
    sealed(b"Q"),
    sealed(pickle.dumps({"a": 1})),
    pickle.dumps({"a": 1}),
])
def test_corrupt_payloads_raise_corrupt_entry(payload):
    with pytest.raises(CorruptEntry):
        decode(payload)


def test_every_single_bit_flip_is_detected():
    payload = encode({"close_rate": [1.5, 2.25], "pair": "BTC/USDT", "n": (1, None)}).payload
    assert decode(sealed(payload[len(MAGIC) + 32:])) == decode(payload)
    for bit in range(len(payload) * 8):
        flipped = bytearray(payload)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptEntry):
            decode(bytes(flipped))


def test_truncated_frame_is_corrupt():
    payload = encode(pd.read_feather(DATA / "ETH_BTC-5m.feather")).payload
    with pytest.raises(CorruptEntry):
        decode(payload[: len(payload) // 2])


class Exploit:
    """Unpickling this would create a marker file: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_in_the_database_is_refused_not_loaded(tmp_path):
    import diskcache

    directory = tmp_path / "c"
    cache = diskcache.Cache(str(directory), disk=SafeDisk)
    cache.set("k", encode("value"))
    cache.close()
    marker = tmp_path / "pwned"
    planted = pickle.dumps(Exploit(marker))
    with sqlite3.connect(directory / "cache.db") as con:  # as an attacker with write access would
        con.execute("UPDATE Cache SET mode = ?, value = ? WHERE key = 'k'",
                    (diskcache.core.MODE_PICKLE, planted))
        con.execute("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, "
                    "access_count, tag, size, mode, filename, value) VALUES "
                    "(?, 0, 0, NULL, 0, 0, NULL, 0, 1, NULL, ?)", (planted, b"x"))
    cache = diskcache.Cache(str(directory), disk=SafeDisk)
    with pytest.raises(CorruptEntry):
        cache.get("k")
    with pytest.raises(CorruptEntry):
        list(cache.iterkeys())  # the pickled key row
    assert not marker.exists()
    cache.close()


def test_a_tampered_file_name_is_neither_read_nor_deleted(tmp_path):
    import diskcache

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    directory = tmp_path / "c"
    cache = diskcache.Cache(str(directory), disk=SafeDisk)
    cache.set("k", encode(pd.read_feather(DATA / "ETH_BTC-5m.feather")))  # stored as a file
    cache.close()
    with sqlite3.connect(directory / "cache.db") as con:
        con.execute("UPDATE Cache SET filename = '../victim.txt' WHERE key = 'k'")
    cache = diskcache.Cache(str(directory), disk=SafeDisk)
    with pytest.raises(CorruptEntry):
        cache.get("k")
    with pytest.raises(CorruptEntry):
        cache.delete("k")
    assert victim.read_text() == "keep me"
    cache.close()


def test_non_text_keys_and_unencoded_values_are_rejected(tmp_path):
    import diskcache

    cache = diskcache.Cache(str(tmp_path / "c"), disk=SafeDisk)
    with pytest.raises(TypeError):
        cache.set(("tuple", "key"), encode(1))
    with pytest.raises(TypeError):
        cache.set("k", {"raw": "value"})
    cache.close()


def test_memory_estimate_is_deep():
    frame = pd.DataFrame({"s": ["x" * 1000] * 100, "f": np.ones(100)})
    assert estimate_memory(frame) >= 100 * 1000 + 800
    assert estimate_memory(np.ones(1000)) >= 8000
    assert estimate_memory({"a": "x" * 500}) >= 500
    assert encode(frame).size >= estimate_memory(frame)
