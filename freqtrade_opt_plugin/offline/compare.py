"""Compare two backtest (or hyperopt) results trade by trade and field by field, exactly.

"Exactly" means the exported JSON values are equal with the same type: ``1`` and ``1.0`` differ,
floats must be bit-for-bit equal (NaN equals NaN). Only fields describing the run itself rather
than its results are skipped (``RUNTIME_FIELDS``: the wall-clock start/end of the run and the
run id, a hash that includes the config). Everything else -- every trade field including each
order, every strategy metric, the strategy comparison row, the data range in the metadata -- must
match.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


#: Keys (at any depth) that describe when/how a run happened, not what it produced.
RUNTIME_FIELDS: frozenset[str] = frozenset(
    {"backtest_run_start_ts", "backtest_run_end_ts", "backtest_start_time", "run_id"}
)


@dataclass(frozen=True)
class Difference:
    """One differing value. ``trade_index`` is set for trade fields (0-based, in export order)."""

    section: str  # "trades", "metrics", "strategy_comparison", "metadata", "epochs", ...
    field: str  # dotted path inside the section, e.g. "close_rate" or "orders[1].cost"
    left: Any
    right: Any
    trade_index: int | None = None

    def describe(self) -> str:
        where = f"trade #{self.trade_index} " if self.trade_index is not None else ""
        return f"{self.section}: {where}{self.field}: {self.left!r} != {self.right!r}"


@dataclass(frozen=True)
class Verdict:
    identical: bool
    trades_left: int
    trades_right: int
    values_compared: int
    differences: int
    first_difference: Difference | None = None
    unit: str = "trades"  # what trades_left/right count ("epochs" for hyperopt)

    def summary(self) -> str:
        if self.identical:
            return (
                f"identical: {self.trades_left} {self.unit}, "
                f"{self.values_compared} values compared"
            )
        assert self.first_difference is not None
        return (
            f"DIFFERENT ({self.differences} differing values); first: "
            f"{self.first_difference.describe()}"
        )


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _walk(
    a: Any, b: Any, path: str, ignore: frozenset[str]
) -> Iterator[tuple[str, Any, Any, bool]]:
    """Yield (path, left, right, equal) for every leaf value of ``a`` and ``b``."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = list(a) + [k for k in b if k not in a]
        for key in keys:
            if key in ignore:
                continue
            sub = f"{path}.{key}" if path else str(key)
            left, right = a.get(key, _MISSING), b.get(key, _MISSING)
            if left is _MISSING or right is _MISSING:
                yield sub, _show(left), _show(right), False
            else:
                yield from _walk(left, right, sub, ignore)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(a) or i >= len(b):
                yield sub, _show(a[i] if i < len(a) else _MISSING), _show(
                    b[i] if i < len(b) else _MISSING
                ), False
            else:
                yield from _walk(a[i], b[i], sub, ignore)
    else:
        yield path, a, b, _same(a, b)


def _show(value: Any) -> Any:
    return "<missing>" if value is _MISSING else value


class _Tally:
    def __init__(self) -> None:
        self.compared = 0
        self.differences = 0
        self.first: Difference | None = None

    def add(self, section: str, items: Iterator[tuple[str, Any, Any, bool]],
            trade_index: int | None = None) -> None:
        for field, left, right, equal in items:
            self.compared += 1
            if not equal:
                self.differences += 1
                if self.first is None:
                    self.first = Difference(section, field, left, right, trade_index)


def _as_stats(result: Any) -> dict[str, Any]:
    """Accept a BacktestRun, a loaded stats dict, or a result directory/file."""
    if hasattr(result, "stats"):
        return result.stats
    if isinstance(result, Mapping):
        return dict(result)
    if isinstance(result, str | os.PathLike):
        from freqtrade.data.btanalysis import load_backtest_stats

        return load_backtest_stats(Path(result))
    raise TypeError(f"cannot compare {type(result).__name__}; pass a BacktestRun, dict or path")


def compare_trades(
    left: Sequence[Mapping[str, Any]],
    right: Sequence[Mapping[str, Any]],
    *,
    ignore: frozenset[str] = RUNTIME_FIELDS,
) -> Verdict:
    """Compare two exported trade lists position by position."""
    tally = _Tally()
    _compare_trades(tally, left, right, ignore)
    return _verdict(tally, len(left), len(right))


def _compare_trades(tally: _Tally, left: Sequence[Mapping[str, Any]],
                    right: Sequence[Mapping[str, Any]], ignore: frozenset[str]) -> None:
    for i in range(min(len(left), len(right))):
        tally.add("trades", _walk(left[i], right[i], "", ignore), trade_index=i)
    if len(left) != len(right):
        i = min(len(left), len(right))
        extra = left[i] if len(left) > len(right) else right[i]
        label = f"{extra.get('pair')} opened {extra.get('open_date')}"
        tally.add(
            "trades",
            iter([(
                "<trade>",
                label if len(left) > len(right) else "<missing>",
                label if len(right) > len(left) else "<missing>",
                False,
            )]),
            trade_index=i,
        )
        tally.differences += abs(len(left) - len(right)) - 1


def compare_backtests(left: Any, right: Any, *, ignore: frozenset[str] = RUNTIME_FIELDS) -> Verdict:
    """Compare two backtest results: trades first (in order), then all metrics of each strategy.

    ``left``/``right``: ``BacktestRun``s, stats dicts as loaded by ``load_backtest_stats``, or
    result paths.
    """
    a, b = _as_stats(left), _as_stats(right)
    tally = _Tally()
    strategies_a, strategies_b = a.get("strategy", {}), b.get("strategy", {})
    names = list(strategies_a) + [n for n in strategies_b if n not in strategies_a]
    n_left = n_right = 0
    for name in names:
        sa, sb = strategies_a.get(name), strategies_b.get(name)
        if sa is None or sb is None:
            presence = ["<missing>" if s is None else "present" for s in (sa, sb)]
            tally.add("strategy", iter([(name, *presence, False)]))
            continue
        trades_a, trades_b = sa.get("trades", []), sb.get("trades", [])
        n_left, n_right = n_left + len(trades_a), n_right + len(trades_b)
        _compare_trades(tally, trades_a, trades_b, ignore)
    for name in names:
        sa, sb = strategies_a.get(name), strategies_b.get(name)
        if sa is not None and sb is not None:
            tally.add("metrics", _walk(sa, sb, name, ignore | {"trades"}))
    tally.add("strategy_comparison",
              _walk(a.get("strategy_comparison", []), b.get("strategy_comparison", []), "", ignore))
    tally.add("metadata", _walk(a.get("metadata", {}), b.get("metadata", {}), "", ignore))
    return _verdict(tally, n_left, n_right)


def compare_hyperopt(left: Any, right: Any, *, ignore: frozenset[str] = RUNTIME_FIELDS) -> Verdict:
    """Compare two hyperopt runs epoch by epoch (params, loss, every result metric and trade)."""
    epochs_a = left.epochs if hasattr(left, "epochs") else list(left)
    epochs_b = right.epochs if hasattr(right, "epochs") else list(right)
    tally = _Tally()
    tally.add("epochs", _walk(epochs_a, epochs_b, "", ignore))
    return _verdict(tally, len(epochs_a), len(epochs_b), unit="epochs")


def _verdict(tally: _Tally, n_left: int, n_right: int, unit: str = "trades") -> Verdict:
    return Verdict(
        unit=unit,
        identical=tally.differences == 0,
        trades_left=n_left,
        trades_right=n_right,
        values_compared=tally.compared,
        differences=tally.differences,
        first_difference=tally.first,
    )
