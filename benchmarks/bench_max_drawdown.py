"""Benchmark: Freqtrade's `calculate_max_drawdown` against the plugin's numpy version.

Both run in this process on the same trades frames, alternating, after checking that their results
are identical (every field, by value and type). Trades are rows of the real backtest export in
tests/data (all its columns and dtypes), resampled and given close dates on a 5m grid in close
order, with several trades closing on the same candle, as in a backtest's result frame.
Cases are the calls Freqtrade makes: the report's absolute and relative drawdown (with the
starting balance) and the drawdown hyperopt losses (no starting balance).

    python benchmarks/bench_max_drawdown.py [--quick] [--samples N]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import freqtrade.data.metrics as target_module
import numpy as np
import pandas as pd
from freqtrade.data.btanalysis import load_backtest_data

from freqtrade_opt_plugin.optimizations.max_drawdown import OPTIMIZATION


ORIGINAL = inspect.unwrap(target_module.calculate_max_drawdown)
calculate_max_drawdown = OPTIMIZATION.build(ORIGINAL)
EXPORT = Path(__file__).resolve().parents[1] / "tests" / "data" / "backtest-result.json"
CASES = {
    "report abs": {"value_col": "profit_abs", "starting_balance": 1000},
    "report rel": {"value_col": "profit_abs", "starting_balance": 1000, "relative": True},
    "hyperopt loss": {"value_col": "profit_abs"},
}


def make_trades(base: pd.DataFrame, n: int, seed: int = 42) -> pd.DataFrame:
    """`n` export rows; close dates on a 5m grid, ~3 trades per used candle, sorted (ties)."""
    rng = np.random.default_rng(seed)
    trades = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    start = pd.Timestamp("2024-01-01", tz="UTC").as_unit("us")
    candles = np.sort(rng.integers(0, max(1, n // 3), n))
    closes = start + pd.to_timedelta(candles * 300, unit="s")
    durations = pd.to_timedelta(trades["close_date"] - trades["open_date"]).to_numpy()
    trades["close_date"] = closes
    trades["open_date"] = closes - durations
    return trades


def assert_identical(got, expected) -> None:
    for field, want in vars(expected).items():
        have = getattr(got, field)
        assert type(have) is type(want), (field, type(have), type(want))
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(have), field
        elif isinstance(want, float):
            assert np.float64(have).tobytes() == np.float64(want).tobytes(), (field, have, want)
        else:
            assert have == want, (field, have, want)


def timed(func: Callable, trades: pd.DataFrame, kwargs: dict, loops: int) -> float:
    """Seconds per call, averaged over `loops` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(loops):
        func(trades, **kwargs)
    return (time.perf_counter() - start) / loops


def peak(func: Callable, trades: pd.DataFrame, kwargs: dict) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        func(trades, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench(trades: pd.DataFrame, kwargs: dict, samples: int) -> dict:
    assert_identical(calculate_max_drawdown(trades, **kwargs), ORIGINAL(trades, **kwargs))
    original_loops = max(1, 5_000 // len(trades))  # ~1-3 ms of work per sample and function
    optimized_loops = original_loops * 10
    times: dict[str, list[float]] = {"original": [], "optimized": []}
    gc.collect()
    for sample in range(samples):
        # Alternate which one runs first so drifting machine load hits both alike.
        pairs = [
            ("original", ORIGINAL, original_loops),
            ("optimized", calculate_max_drawdown, optimized_loops),
        ]
        for name, func, loops in pairs if sample % 2 == 0 else reversed(pairs):
            times[name].append(timed(func, trades, kwargs, loops))
    original_s = statistics.median(times["original"])
    optimized_s = statistics.median(times["optimized"])
    return {
        "original_s": original_s,
        "optimized_s": optimized_s,
        "speedup": original_s / optimized_s,
        "original_peak": peak(ORIGINAL, trades, kwargs),
        "optimized_peak": peak(calculate_max_drawdown, trades, kwargs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, no 10,000 size")
    parser.add_argument("--samples", type=int, help="timed samples per case (default 15 / 5)")
    args = parser.parse_args()

    base = load_backtest_data(EXPORT)
    sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000]
    samples = args.samples or (5 if args.quick else 15)
    print(
        "calculate_max_drawdown: medians of alternating samples in one process (each sample "
        "averages several calls); identical results asserted first; peak memory by tracemalloc"
    )
    print(
        f"{'trades':>7} {'case':<14} {'original':>10} {'optimized':>10} {'speedup':>8}"
        f" {'orig peak':>10} {'opt peak':>9}"
    )
    by_size: dict[int, list[dict]] = {}
    for n in sizes:
        trades = make_trades(base, n)
        for case, kwargs in CASES.items():
            row = bench(trades, kwargs, samples)
            by_size.setdefault(n, []).append(row)
            print(
                f"{n:>7,} {case:<14} {row['original_s'] * 1e6:>8.0f}us"
                f" {row['optimized_s'] * 1e6:>8.1f}us {row['speedup']:>7.1f}x"
                f" {row['original_peak'] / 1024:>8.0f}KB {row['optimized_peak'] / 1024:>7.0f}KB",
                flush=True,
            )
    first, last = sizes[0], sizes[-1]

    def total(n: int, key: str) -> float:
        return sum(row[key] for row in by_size[n])

    print(
        f"scaling x{last // first} trades: original x"
        f"{total(last, 'original_s') / total(first, 'original_s'):.1f}, optimized x"
        f"{total(last, 'optimized_s') / total(first, 'optimized_s'):.1f}"
    )


if __name__ == "__main__":
    main()
