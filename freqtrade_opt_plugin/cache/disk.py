"""Cache value serialization without pickle, and the diskcache `Disk` that enforces it.

diskcache pickles keys and values by default, so anyone able to write the cache directory could
run code in every process that reads it (CVE-2025-69872). `SafeDisk` stores only what `encode`
produced and reads only what `decode` understands:

* ``F`` DataFrame and ``S`` Series: Arrow IPC stream (pandas metadata restores dtypes and index);
  object columns holding containers (e.g. the ``orders`` lists of a backtest's trades) go into
  the header as tagged JSON instead, which Arrow would turn into arrays;
* ``N`` numpy array and ``G`` numpy scalar: dtype/shape header + raw C-ordered bytes;
* ``J`` plain values (None, bool, int, float, str, list, tuple, dict) as tagged JSON;
* ``T`` a tuple of any of the above.

Every payload starts with `MAGIC` and the SHA-256 of the bytes after it; `decode` checks it before
parsing anything, so a flipped bit or a truncated file is a `CorruptEntry` (the caller removes it
and recomputes), never a changed value served silently.

Keys must be ``str`` (the content hashes). A pickled key or value found in the database (mode
``MODE_PICKLE`` or a non-raw key) is refused, never loaded. Anything else raises `NotCacheable`
at encode time, and the caller runs uncached.

`encode` proves exactness before anything is stored: it decodes its own output and compares the
`content_hash` with the original's, so a value that would come back different (an object column
Arrow would coerce, an unusual extension dtype...) is reported as `NotCacheable` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import os.path as op
import re
import sqlite3
import struct
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import diskcache
import numpy as np
import pandas as pd
import pyarrow as pa

from freqtrade_opt_plugin.cache.hashing import Unhashable, same_content


__all__ = [
    "CorruptEntry",
    "Encoded",
    "NotCacheable",
    "SafeDisk",
    "decode",
    "encode",
    "verified_body",
    "estimate_memory",
]

MAGIC = b"FTOPTC2"  # version 2: a checksum follows the magic
_OLD_MAGIC = b"FTOPTC1"  # version 1 had no checksum: refused (recomputed once)
_DIGEST = 32  # SHA-256 of the bytes after the digest (hardware-accelerated on most CPUs)
_VALUE_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")
_SERIES_COLUMN = "__ftopt_series__"


class NotCacheable(TypeError):
    """A value this cache cannot store exactly (it is returned uncached)."""


class CorruptEntry(ValueError):
    """Stored bytes that are not a valid entry (truncated, tampered with, or pickled)."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value ready for `SafeDisk.store`: its bytes and its in-memory size estimate."""

    payload: bytes
    memory: int

    @property
    def size(self) -> int:
        """Bytes charged against the cache's size limit: the larger of disk and memory size."""
        return max(len(self.payload), self.memory)


# -- memory estimate ---------------------------------------------------------------------------
def estimate_memory(value: Any, _depth: int = 0) -> int:
    """Deep in-memory size of a value in bytes (DataFrames: ``memory_usage(deep=True)``)."""
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=True, deep=True).sum())
    if isinstance(value, pd.Series):
        return int(value.memory_usage(index=True, deep=True))
    if isinstance(value, pd.Index):
        return int(value.memory_usage(deep=True))
    if isinstance(value, np.ndarray):
        extra = 0
        if value.dtype.kind == "O" and _depth < 4:
            extra = sum(estimate_memory(v, _depth + 1) for v in value.ravel())
        return int(value.nbytes) + extra
    size = sys.getsizeof(value)
    if _depth < 16:
        if isinstance(value, dict):
            size += sum(
                estimate_memory(k, _depth + 1) + estimate_memory(v, _depth + 1)
                for k, v in value.items()
            )
        elif isinstance(value, (list, tuple, set, frozenset)):
            size += sum(estimate_memory(v, _depth + 1) for v in value)
    return size


# -- plain values as tagged JSON -----------------------------------------------------------------
def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        raise NotCacheable("value nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value  # repr round-trips exactly; nan/inf use json's NaN/Infinity
    if kind is list:
        return [_to_json(v, depth + 1) for v in value]
    if kind is tuple:
        return {"$t": [_to_json(v, depth + 1) for v in value]}
    if kind is dict:
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: _to_json(v, depth + 1) for k, v in value.items()}
        return {"$d": [[_to_json(k, depth + 1), _to_json(v, depth + 1)] for k, v in value.items()]}
    raise NotCacheable(f"a {kind.__qualname__} is not a plain JSON value")


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$t" in value:
            return tuple(_from_json(v) for v in value["$t"])
        if len(value) == 1 and "$d" in value:
            return {_hashable(_from_json(k)): _from_json(v) for k, v in value["$d"]}
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict)):
        raise CorruptEntry("unhashable dict key in stored JSON")
    return key


# -- Arrow -------------------------------------------------------------------------------------
def _frame_bytes(frame: pd.DataFrame, name: Any = None) -> list:
    """Header (JSON: Series name, index freq, object and container columns) + Arrow IPC stream."""
    freq = getattr(frame.index, "freq", None)
    if freq is not None and not isinstance(frame.index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        freq = None  # PeriodIndex carries its freq in the dtype
    objects = [i for i, dtype in enumerate(frame.dtypes)
               if isinstance(dtype, np.dtype) and dtype.kind == "O"]
    containers = {}
    for position in objects:
        values = frame.iloc[:, position].tolist()
        if any(type(v) in (list, dict, tuple) for v in values):
            containers[str(position)] = [_to_json(v) for v in values]
    header = {
        "name": _to_json(name),
        "freq": None if freq is None else freq.freqstr,
        "object": objects,
        "columns": _columns_spec(frame.columns),
        "containers": containers,
    }
    if containers:
        frame = frame.copy(deep=False)
        for position in containers:
            frame.isetitem(int(position), pd.Series(None, index=frame.index, dtype=object))
    if header["columns"] is not None:
        # Arrow field names are strings: store positional ones, the labels in the header
        frame = frame.set_axis([f"c{i}" for i in range(frame.shape[1])], axis=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. mixed-type labels: the verify step decides
            table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise NotCacheable(f"Arrow cannot hold this frame: {exc}") from None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    head = json.dumps(header).encode()
    return [struct.pack("<I", len(head)), head, sink.getvalue()]


def _columns_spec(columns: pd.Index) -> dict | None:
    """The column labels as JSON (None: leave them to Arrow, the verify step decides)."""
    if isinstance(columns, pd.MultiIndex):
        return None
    try:
        if isinstance(columns, pd.RangeIndex):
            return {"range": [columns.start, columns.stop, columns.step],
                    "name": _to_json(columns.name)}
        if type(columns) is not pd.Index:
            return None
        return {"labels": _to_json(list(columns)), "dtype": str(columns.dtype),
                "name": _to_json(columns.name)}
    except NotCacheable:
        return None


def _columns_from_spec(spec: dict) -> pd.Index:
    if "range" in spec:
        start, stop, step = (int(v) for v in spec["range"])
        return pd.RangeIndex(start, stop, step, name=_from_json(spec["name"]))
    return pd.Index(_from_json(spec["labels"]), dtype=str(spec["dtype"]),
                    name=_from_json(spec["name"]))


def _bytes_frame(data: memoryview) -> tuple[pd.DataFrame, Any]:
    """Inverse of `_frame_bytes`: the frame and the stored Series name."""
    try:
        (length,) = struct.unpack("<I", data[:4])
        header = json.loads(bytes(data[4 : 4 + length]))
        name = _from_json(header["name"])
        freq = header["freq"]
        objects = [int(i) for i in header["object"]]
        table = pa.ipc.open_stream(pa.py_buffer(data[4 + length :])).read_all()
        table.validate(full=True)
        frame = table.to_pandas()
        if header.get("columns") is not None:
            frame = frame.set_axis(_columns_from_spec(header["columns"]), axis=1)
        for position in objects:
            frame.isetitem(position, frame.iloc[:, position].astype(object))
        for position, stored in (header.get("containers") or {}).items():
            values = np.empty(len(frame), dtype=object)
            if len(stored) != len(values):
                raise CorruptEntry("container column length does not match the frame")
            for row, value in enumerate(stored):
                values[row] = _from_json(value)
            frame.isetitem(int(position), pd.Series(values, index=frame.index, dtype=object))
        if freq is not None:
            index = frame.index
            frame.index = type(index)(index, freq=freq)
    except CorruptEntry:
        raise
    except Exception as exc:  # noqa: BLE001 - anything malformed is a corrupt entry
        raise CorruptEntry(f"invalid frame entry: {type(exc).__name__}: {exc}") from None
    return frame, name


# -- numpy arrays: a JSON header (dtype, shape) and the C-ordered bytes -----------------------
_ARRAY_KINDS = "biufcmMSU"  # never object ("O") or void/structured ("V")


def _array_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype.kind not in _ARRAY_KINDS or arr.dtype.fields is not None:
        raise NotCacheable(f"numpy array of dtype {arr.dtype} is not stored")
    head = json.dumps({"dtype": arr.dtype.str, "shape": list(arr.shape)}).encode()
    return struct.pack("<I", len(head)) + head + np.ascontiguousarray(arr).tobytes()


def _bytes_array(data: memoryview) -> np.ndarray:
    try:
        (length,) = struct.unpack("<I", data[:4])
        header = json.loads(bytes(data[4 : 4 + length]))
        dtype = np.dtype(str(header["dtype"]))
        shape = tuple(int(n) for n in header["shape"])
    except (struct.error, ValueError, TypeError, KeyError) as exc:
        raise CorruptEntry(f"invalid array header: {exc}") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or any(n < 0 for n in shape):
        raise CorruptEntry(f"refusing array of dtype {dtype} shape {shape}")
    body = data[4 + length :]
    if len(body) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise CorruptEntry("array data does not match its header")
    return np.frombuffer(body, dtype=dtype).reshape(shape).copy()


# -- encode / decode ---------------------------------------------------------------------------
def _encode_one(value: Any) -> list:
    """The parts (bytes-like) of one value's encoding: a kind byte, then its body."""
    if isinstance(value, pd.DataFrame):
        if type(value) is not pd.DataFrame:
            raise NotCacheable(f"DataFrame subclass {type(value).__qualname__}")
        return [b"F", *_frame_bytes(value)]
    if isinstance(value, pd.Series):
        if type(value) is not pd.Series:
            raise NotCacheable(f"Series subclass {type(value).__qualname__}")
        frame = value.to_frame(name=_SERIES_COLUMN)
        frame.attrs = dict(value.attrs)
        return [b"S", *_frame_bytes(frame, value.name)]
    if isinstance(value, np.ndarray):
        if type(value) is not np.ndarray:
            raise NotCacheable(f"ndarray subclass {type(value).__qualname__}")
        return [b"N", _array_bytes(value)]
    if isinstance(value, np.generic):
        return [b"G", _array_bytes(np.asarray(value))]
    return [b"J", json.dumps(_to_json(value), allow_nan=True).encode()]


def _decode_one(data: memoryview) -> Any:
    if not data:
        raise CorruptEntry("empty part")
    kind, body = bytes(data[:1]), data[1:]
    if kind == b"F":
        return _bytes_frame(body)[0]
    if kind == b"S":
        frame, name = _bytes_frame(body)
        if list(frame.columns) != [_SERIES_COLUMN]:
            raise CorruptEntry("Series entry without its column")
        series = frame[_SERIES_COLUMN]
        series.name = name
        series.attrs = dict(frame.attrs)
        return series
    if kind in (b"N", b"G"):
        arr = _bytes_array(body)
        return arr[()] if kind == b"G" else arr
    if kind == b"J":
        try:
            return _from_json(json.loads(bytes(body)))
        except (ValueError, TypeError, RecursionError) as exc:
            raise CorruptEntry(f"invalid JSON: {exc}") from None
    raise CorruptEntry(f"unknown entry kind {kind!r}")


def _pack(value: Any) -> list:
    if type(value) is tuple and any(
        isinstance(v, (pd.DataFrame, pd.Series, np.ndarray, np.generic)) for v in value
    ):
        parts = [_encode_one(v) for v in value]
        lengths = [sum(memoryview(chunk).nbytes for chunk in part) for part in parts]
        head = struct.pack("<I", len(parts)) + b"".join(struct.pack("<Q", n) for n in lengths)
        return [b"T", head, *(chunk for part in parts for chunk in part)]
    return _encode_one(value)


def _unpack(data: memoryview) -> Any:
    if bytes(data[:1]) != b"T":
        return _decode_one(data)
    try:
        (count,) = struct.unpack("<I", data[1:5])
        lengths = struct.unpack(f"<{count}Q", data[5 : 5 + 8 * count])
    except struct.error as exc:
        raise CorruptEntry(f"invalid tuple header: {exc}") from None
    position = 5 + 8 * count
    parts = []
    for length in lengths:
        end = position + length
        if end > len(data):
            raise CorruptEntry("truncated tuple entry")
        parts.append(_decode_one(data[position:end]))
        position = end
    if position != len(data):
        raise CorruptEntry("trailing bytes after tuple entry")
    return tuple(parts)


def encode(value: Any, *, verify: bool = True) -> Encoded:
    """Serialize `value` (raises `NotCacheable`), proving with `verify` that it decodes equal."""
    try:
        parts = _pack(value)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        payload = b"".join([MAGIC, digest.digest(), *parts])
    except NotCacheable:
        raise
    except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
        raise NotCacheable(f"cannot serialize a {type(value).__qualname__}: {exc}") from None
    if verify:
        try:
            same = same_content(_unpack(memoryview(payload)[len(MAGIC) + _DIGEST:]), value)
        except (CorruptEntry, Unhashable) as exc:
            raise NotCacheable(f"does not round-trip: {exc}") from None
        if not same:
            raise NotCacheable(
                f"a {type(value).__qualname__} would not come back identical "
                "(dtype, index or values change through Arrow/JSON)"
            )
    return Encoded(payload, estimate_memory(value))


def verified_body(payload: bytes | memoryview) -> memoryview:
    """The body of an entry whose header and checksum are intact (else `CorruptEntry`)."""
    view = memoryview(payload)
    magic = bytes(view[: len(MAGIC)])
    if magic != MAGIC:
        if magic == _OLD_MAGIC:
            raise CorruptEntry("entry of an earlier format without checksum")
        raise CorruptEntry("missing header (not written by freqtrade-opt)")
    start = len(MAGIC) + _DIGEST
    if len(view) < start or hashlib.sha256(view[start:]).digest() != view[len(MAGIC):start]:
        raise CorruptEntry("checksum mismatch (the stored bytes changed after writing)")
    return view[start:]


def decode(payload: bytes | memoryview) -> Any:
    """Inverse of `encode`; raises `CorruptEntry` for anything it did not produce, or whose
    checksum does not match its bytes."""
    return _unpack(verified_body(payload))


class SafeDisk(diskcache.Disk):
    """diskcache `Disk` storing `Encoded` payloads and never unpickling anything."""

    def __init__(self, directory: str, min_file_size: int = 2**15, **_ignored: Any) -> None:
        # pickle_protocol (a diskcache setting kept in the database) is irrelevant: never pickled
        super().__init__(directory, min_file_size=int(min_file_size), pickle_protocol=0)

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"cache keys are str content hashes, not {type(key).__qualname__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw or type(key) is not str:
            raise CorruptEntry("refusing a non-text (possibly pickled) key in the cache database")
        return key

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN):
        if read or not isinstance(value, Encoded):
            raise TypeError("SafeDisk stores only Encoded values")
        payload = value.payload
        if len(payload) < self.min_file_size:
            return value.size, diskcache.core.MODE_RAW, None, sqlite3.Binary(payload)
        filename, full_path = self.filename(key, value)
        _write_file(full_path, payload)
        return value.size, diskcache.core.MODE_BINARY, filename, None

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if read:
            raise TypeError("SafeDisk does not hand out file handles")
        if mode == diskcache.core.MODE_RAW:
            if not isinstance(value, (bytes, memoryview)):
                raise CorruptEntry(f"raw entry of type {type(value).__qualname__}")
            return decode(value)
        if mode == diskcache.core.MODE_BINARY and isinstance(filename, str):
            _check_filename(filename)
            path = op.join(self._directory, filename)
            with open(path, "rb") as reader:
                data = reader.read()
            try:
                return decode(data)
            except CorruptEntry as exc:
                raise CorruptEntry(f"{path}: {exc}") from None
        raise CorruptEntry(f"refusing entry of mode {mode} (only Arrow/npy/JSON are read)")

    def remove(self, file_path: str) -> None:
        _check_filename(file_path)  # a tampered database must not delete files elsewhere
        super().remove(file_path)


def _write_file(full_path: str, payload: bytes) -> None:
    """One ``write`` of the whole payload (diskcache's ``_write`` iterates a BytesIO by *lines*,
    thousands of small writes for binary data); retries like it when another process removes
    the directory in between."""
    directory = op.dirname(full_path)
    for attempt in range(10):
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with open(full_path, "xb") as writer:
                writer.write(payload)
            return
        except FileNotFoundError:
            if attempt == 9:
                raise


def _check_filename(filename: str) -> None:
    if not _VALUE_FILE.fullmatch(filename):
        raise CorruptEntry(f"refusing value file name {filename!r} (not one diskcache creates)")
