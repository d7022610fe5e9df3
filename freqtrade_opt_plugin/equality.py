"""Exact comparison of two results: None when identical, else where they first differ.

"Identical" is strict: same types, same values bit for bit (NaN equals NaN), and for pandas
objects the same index, columns, dtypes and freq.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd


def _float_same(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def first_difference(a: Any, b: Any, where: str = "result") -> str | None:
    """The first place where `a` and `b` differ (a short description), or None."""
    if type(a) is not type(b):
        return f"{where}: type {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, pd.DataFrame | pd.Series):
        check = pd.testing.assert_frame_equal if isinstance(a, pd.DataFrame) else \
            pd.testing.assert_series_equal
        try:
            check(a, b, check_exact=True, check_freq=True, check_flags=True)
        except AssertionError as exc:
            return f"{where}: {' '.join(str(exc).split())[:300]}"
        return None
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{where}: array {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            return f"{where}: array values differ"
        return None
    if isinstance(a, float):
        return None if _float_same(a, b) else f"{where}: {a!r} != {b!r}"
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (diff := first_difference(x, y, f"{where}[{i}]")) is not None:
                return diff
        return None
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)[:5]} != {list(b)[:5]}"
        for key in a:
            if (diff := first_difference(a[key], b[key], f"{where}[{key!r}]")) is not None:
                return diff
        return None
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            diff = first_difference(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
            if diff is not None:
                return diff
        return None
    if isinstance(a, np.floating):
        return None if _float_same(float(a), float(b)) else f"{where}: {a!r} != {b!r}"
    if a is pd.NaT or b is pd.NaT:
        return None if a is b else f"{where}: {a!r} != {b!r}"
    try:
        same = bool(a == b)
    except Exception:
        same = False
    return None if same else f"{where}: {a!r} != {b!r}"
