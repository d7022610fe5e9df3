"""Content hashing for cache keys: the *full* content of DataFrames, Series and numpy arrays.

`content_hash(*values)` is the SHA-256 of a canonical, unambiguous byte encoding of its arguments:
every value is written with a type tag and length prefixes, so two different values never share an
encoding. For pandas objects the encoding covers the object type, shape, column labels (values,
types and the column index's own type and dtype), the index (type, dtype, names, values, freq),
every column's dtype and every value, ``attrs`` and ``flags``. Two frames that differ in a single
cell, a column name, a dtype or an index label have different hashes (unlike
``pd.util.hash_pandas_object``, which ignores column names, or sampling a few rows).

Values are hashed exactly as they are: ``0.0`` and ``-0.0`` differ, and so do ``1`` and ``1.0``,
``[1]`` and ``(1,)``, and dicts whose items were inserted in another order. That makes some equal
values miss each other's entries, never a wrong hit.

Types without a canonical encoding (arbitrary objects, open files, lambdas...) raise `Unhashable`;
callers then run uncached. `content_hash(..., fallback=f)` lets a caller encode extra types: ``f``
returns a plain value to hash in place of the object, or raises `Unhashable`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import struct
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd


__all__ = ["Unhashable", "content_hash", "frame_hash", "same_content"]

Fallback = Callable[[Any], Any]
_MAX_DEPTH = 64


class Unhashable(TypeError):
    """A value whose content cannot be encoded canonically (so it cannot be part of a key)."""


class _Writer:
    __slots__ = ("_h", "_fallback", "_seen", "_blocks")

    def __init__(self, fallback: Fallback | None, blocks: list | None = None) -> None:
        self._h = hashlib.sha256()
        self._fallback = fallback
        self._seen: set[int] = set()
        self._blocks = blocks  # when a list: numpy blocks of frames go there, not into the hash

    # -- primitives ---------------------------------------------------------------------------
    def tag(self, tag: bytes) -> None:
        self._h.update(tag)

    def raw(self, data: bytes | memoryview) -> None:
        self._h.update(struct.pack("<Q", len(data)))
        self._h.update(data)

    def text(self, value: str) -> None:
        self.raw(value.encode("utf-8", "surrogatepass"))

    def number(self, value: int) -> None:
        self.text(str(value))

    def digest(self) -> str:
        return self._h.hexdigest()

    # -- values -------------------------------------------------------------------------------
    def value(self, value: Any, depth: int = 0) -> None:  # noqa: C901 - one dispatch table
        if depth > _MAX_DEPTH:
            raise Unhashable("value nested too deeply to hash")
        kind = type(value)
        if value is None:
            self.tag(b"N")
        elif kind is bool:
            self.tag(b"T" if value else b"F")
        elif kind is int:
            self.tag(b"I")
            self.number(value)
        elif kind is float:
            self.tag(b"D")
            self._h.update(struct.pack("<d", value))
        elif kind is str:
            self.tag(b"S")
            self.text(value)
        elif kind is bytes:
            self.tag(b"Y")
            self.raw(value)
        elif kind in (list, tuple):
            self.tag(b"L" if kind is list else b"U")
            self._container(value, depth, lambda: self._sequence(value, depth))
        elif kind is dict:
            self.tag(b"M")
            self._container(value, depth, lambda: self._mapping(value, depth))
        elif kind in (set, frozenset):
            self.tag(b"Z" if kind is set else b"z")
            self._unordered(value, depth)
        elif isinstance(value, pd.DataFrame):
            self._frame(value)
        elif isinstance(value, pd.Series):
            self._series(value)
        elif isinstance(value, pd.Index):
            self._index(value)
        elif isinstance(value, np.ndarray):
            self._ndarray(value)
        elif isinstance(value, pd.api.extensions.ExtensionArray):
            self.tag(b"X")
            self._type(value)
            self._array(value)
        elif isinstance(value, np.generic):
            self.tag(b"G")
            self.text(value.dtype.str)
            if value.dtype.kind == "O":
                self.value(value.item(), depth + 1)
            else:
                self.raw(value.tobytes())
        else:
            self._scalar_or_fallback(value, depth)

    def _container(self, value: Any, depth: int, body: Callable[[], None]) -> None:
        ident = id(value)
        if ident in self._seen:
            raise Unhashable("self-referencing container")
        self._seen.add(ident)
        try:
            body()
        finally:
            self._seen.discard(ident)

    def _sequence(self, value: list | tuple, depth: int) -> None:
        self.number(len(value))
        for item in value:
            self.value(item, depth + 1)

    def _mapping(self, value: dict, depth: int) -> None:
        self.number(len(value))
        for key, item in value.items():  # insertion order: reordered dicts get another key
            self.value(key, depth + 1)
            self.value(item, depth + 1)

    def _unordered(self, value: set | frozenset, depth: int) -> None:
        digests = sorted(content_hash(item, fallback=self._fallback) for item in value)
        self.number(len(digests))
        for item in digests:
            self.text(item)

    def _type(self, value: Any) -> None:
        kind = type(value)
        self.text(f"{kind.__module__}.{kind.__qualname__}")

    def _scalar_or_fallback(self, value: Any, depth: int) -> None:  # noqa: C901
        if value is pd.NaT:
            self.tag(b"t")
        elif value is pd.NA:
            self.tag(b"a")
        elif isinstance(value, enum.Enum):
            self.tag(b"E")
            self._type(value)
            self.text(value.name)
            self.value(value.value, depth + 1)
        elif isinstance(value, pd.Timestamp):
            self.tag(b"P")
            self.number(value.value)
            self.text(value.unit)
            self.text(str(value.tz))
        elif isinstance(value, pd.Timedelta):
            self.tag(b"Q")
            self.number(value.value)
            self.text(value.unit)
        elif isinstance(value, (_dt.datetime, _dt.date, _dt.time, _dt.timedelta)):
            self.tag(b"d")
            self._type(value)
            self.text(repr(value))
        elif isinstance(value, decimal.Decimal):
            self.tag(b"C")
            self.text(str(value))
        elif isinstance(value, PurePath):
            self.tag(b"p")
            self._type(value)
            self.text(str(value))
        elif isinstance(value, range):
            self.tag(b"R")
            for part in (value.start, value.stop, value.step):
                self.number(part)
        elif isinstance(value, (pd.Interval, pd.Period)):
            self.tag(b"V")
            self._type(value)
            self.text(repr(value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            self.tag(b"c")
            self._type(value)
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            self._container(value, depth, lambda: self._mapping(fields, depth))
        elif self._fallback is not None:
            replacement = self._fallback(value)  # raises Unhashable when it cannot help
            self.tag(b"f")
            self._type(value)
            self.value(replacement, depth + 1)
        else:
            raise Unhashable(f"cannot hash a {type(value).__qualname__} by content")

    # -- numpy and pandas ---------------------------------------------------------------------
    def _ndarray(self, arr: np.ndarray) -> None:
        self.tag(b"A")
        self._type(arr)
        self.text(arr.dtype.str)
        self.text(repr(arr.shape))
        if arr.dtype.kind == "O":
            self._objects(arr.ravel(order="C"))
        elif arr.dtype.fields is not None or arr.dtype.kind == "V":
            raise Unhashable("structured numpy arrays are not hashed")
        else:
            self.raw(memoryview(np.ascontiguousarray(arr)).cast("B"))

    def _objects(self, values: np.ndarray) -> None:
        self.number(len(values))
        if len(values) and all(type(v) is str for v in values):
            self.tag(b"s")
            self._strings(values)
            return
        for item in values:
            self.value(item, 1)

    def _strings(self, values) -> None:
        encoded = [v.encode("utf-8", "surrogatepass") for v in values]
        self.raw(np.array([len(e) for e in encoded], dtype=np.int64).tobytes())
        self.raw(b"".join(encoded))

    def _dtype(self, dtype: Any) -> None:
        self.text(type(dtype).__qualname__)
        self.text(str(dtype))
        if isinstance(dtype, pd.CategoricalDtype):
            self.value(bool(dtype.ordered))
            if dtype.categories is not None:
                self._index(dtype.categories)

    def _array(self, arr: Any) -> None:  # noqa: C901 - per-dtype encodings
        """Values of a pandas column/index array, with its dtype."""
        dtype = arr.dtype
        self._dtype(dtype)
        self.number(len(arr))
        if isinstance(arr, np.ndarray):
            if dtype.kind == "O":
                self._objects(arr)
            else:
                self.raw(memoryview(np.ascontiguousarray(arr)).cast("B"))
            return
        if isinstance(dtype, np.dtype):  # NumpyExtensionArray and datetime-likes
            if dtype.kind in "mM":
                self.raw(memoryview(np.ascontiguousarray(arr.asi8)).cast("B"))
                return
            self._array(np.asarray(arr))
            return
        if isinstance(dtype, pd.DatetimeTZDtype):
            self.raw(memoryview(np.ascontiguousarray(arr.asi8)).cast("B"))
            return
        if isinstance(dtype, pd.CategoricalDtype):
            self.raw(memoryview(np.ascontiguousarray(arr.codes)).cast("B"))
            return
        mask = np.ascontiguousarray(pd.isna(arr), dtype=bool)
        self.raw(memoryview(mask).cast("B"))
        if isinstance(dtype, pd.StringDtype):
            values = arr.to_numpy(dtype=object, na_value="")
            self._strings(values)
            return
        numpy_dtype = getattr(dtype, "numpy_dtype", None)
        if isinstance(numpy_dtype, np.dtype) and numpy_dtype.kind in "biuf":
            # masked (nullable) arrays: the mask above plus the values, missing ones as 0
            values = arr.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0))
            self.raw(memoryview(np.ascontiguousarray(values)).cast("B"))
            return
        self._objects(arr.to_numpy(dtype=object))

    def _index(self, index: pd.Index) -> None:
        self.tag(b"i")
        self._type(index)
        self.number(len(index))
        self._name(list(index.names))
        if isinstance(index, pd.RangeIndex):
            for part in (index.start, index.stop, index.step):
                self.number(part)
            return
        if isinstance(index, pd.MultiIndex):
            self.number(index.nlevels)
            for level, codes in zip(index.levels, index.codes, strict=True):
                self._index(level)
                self.raw(memoryview(np.ascontiguousarray(codes)).cast("B"))
            return
        freq = getattr(index, "freq", None)
        self.text("" if freq is None else str(freq))
        self._array(index.array)

    def _name(self, name: Any) -> None:
        # labels: the hash distinguishes 1 from "1" and None from "None"
        self.value(name)

    def _meta(self, obj: pd.DataFrame | pd.Series) -> None:
        self.value(bool(obj.flags.allows_duplicate_labels))
        self.value(dict(obj.attrs) if obj.attrs else None)

    def _series(self, series: pd.Series) -> None:
        self.tag(b"s")
        self._type(series)
        self._name(series.name)
        self._index(series.index)
        self._meta(series)
        self._array(series.array)

    def _frame(self, frame: pd.DataFrame) -> None:
        self.tag(b"f")
        self._type(frame)
        self.text(repr(frame.shape))
        self._index(frame.columns)
        self._index(frame.index)
        self._meta(frame)
        dtypes = list(frame.dtypes)
        groups: dict[np.dtype, list[int]] = {}
        for position, dtype in enumerate(dtypes):
            self._dtype(dtype)
            if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
                groups.setdefault(dtype, []).append(position)
        # numpy-typed columns: one block per dtype (column-major), the others one by one
        grouped = set()
        for dtype, positions in groups.items():
            block = frame.iloc[:, positions].to_numpy(dtype=dtype, copy=False)
            self.tag(b"g")
            self.text(dtype.str)
            self.raw(np.asarray(positions, dtype=np.int64).tobytes())
            data = memoryview(np.ascontiguousarray(block.T)).cast("B")
            if self._blocks is None:
                self.raw(data)
            else:
                self._blocks.append(data)
            grouped.update(positions)
        for position in range(len(dtypes)):
            if position not in grouped:
                self.tag(b"c")
                self.number(position)
                self._array(frame.iloc[:, position].array)


def content_hash(*values: Any, fallback: Fallback | None = None) -> str:
    """Hex SHA-256 of the canonical encoding of `values` (raises `Unhashable`)."""
    writer = _Writer(fallback)
    writer.number(len(values))
    for value in values:
        writer.value(value)
    return writer.digest()


def same_content(left: Any, right: Any) -> bool:
    """``content_hash(left) == content_hash(right)``, faster for DataFrames: their numpy-typed
    column blocks are compared byte by byte instead of hashed (raises `Unhashable`)."""
    if not (isinstance(left, pd.DataFrame) and isinstance(right, pd.DataFrame)):
        return content_hash(left) == content_hash(right)
    blocks: tuple[list, list] = ([], [])
    digests = []
    for value, found in zip((left, right), blocks, strict=True):
        writer = _Writer(None, found)
        writer.number(1)
        writer.value(value)
        digests.append(writer.digest())
    if digests[0] != digests[1] or len(blocks[0]) != len(blocks[1]):
        return False
    return all(_same_bytes(a, b) for a, b in zip(*blocks, strict=True))


def _same_bytes(left: memoryview, right: memoryview) -> bool:
    if left.nbytes != right.nbytes:
        return False
    width = 8 if left.nbytes % 8 == 0 else 1
    dtype = np.uint64 if width == 8 else np.uint8
    return bool(np.array_equal(np.frombuffer(left, dtype=dtype), np.frombuffer(right, dtype=dtype)))


def frame_hash(frame: pd.DataFrame) -> str:
    """`content_hash` of one DataFrame (shorthand used for per-pair keys)."""
    return content_hash(frame)
