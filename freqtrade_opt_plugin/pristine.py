"""Snapshots of call arguments, so a failed optimized call can be undone before the fallback.

DataFrames (also inside dicts, e.g. Backtesting's ``processed``) are snapshotted shallowly under
pandas Copy-on-Write (cheap: no data is copied) and deeply without it; dicts keep their items.
`restore()` puts every snapshotted object back in place: same object identity, original content.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def _copy_on_write() -> bool:
    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return bool(getattr(pd.options.mode, "copy_on_write", False) is True)


_SHALLOW = _copy_on_write()


def _frame_copy(frame: pd.DataFrame | pd.Series):
    return frame.copy(deep=not _SHALLOW)


class Snapshot:
    """Saved state of the mutable arguments of one call."""

    __slots__ = ("_frames", "_dicts")

    def __init__(self, args: tuple, kwargs: dict[str, Any]) -> None:
        self._frames: list[tuple[Any, Any]] = []
        self._dicts: list[tuple[dict, dict]] = []
        for value in (*args, *kwargs.values()):
            self._take(value)

    def _take(self, value: Any) -> None:
        if isinstance(value, (pd.DataFrame, pd.Series)):
            self._frames.append((value, _frame_copy(value)))
        elif isinstance(value, dict):
            self._dicts.append((value, dict(value)))
            for item in value.values():
                if isinstance(item, (pd.DataFrame, pd.Series)):
                    self._frames.append((item, _frame_copy(item)))

    def restore(self) -> None:
        """Put every snapshotted argument back as it was."""
        for target, saved in self._dicts:
            target.clear()
            target.update(saved)
        for target, saved in self._frames:
            # pandas' own primitive for in-place operations: swap the data manager back.
            target._update_inplace(_frame_copy(saved))
            target.attrs = dict(saved.attrs)
