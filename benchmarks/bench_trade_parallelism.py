"""Benchmark: Freqtrade's `analyze_trade_parallelism` against the plugin's vectorized version.

Both run in this process on the same trades frames, alternating, after checking that their results
are identical. Trades are rows of the real backtest export in tests/data (all its columns, pairs
and dtypes), redistributed over a period that grows with the number of trades, so the number of
concurrently open trades stays realistic.

    python benchmarks/bench_trade_parallelism.py [--quick] [--reps N] [--memory] [--timeframe 5m]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import freqtrade.data.btanalysis.trade_parallelism as target_module
import numpy as np
import pandas as pd
from freqtrade.data.btanalysis import load_backtest_data
from freqtrade.exchange import timeframe_to_seconds
from pandas.testing import assert_frame_equal

from freqtrade_opt_plugin.optimizations.trade_parallelism import OPTIMIZATION


ORIGINAL = inspect.unwrap(target_module.analyze_trade_parallelism)
analyze_trade_parallelism = OPTIMIZATION.build(ORIGINAL)
EXPORT = Path(__file__).resolve().parents[1] / "tests" / "data" / "backtest-result.json"


def make_trades(base: pd.DataFrame, n: int, timeframe: str, seed: int = 42) -> pd.DataFrame:
    """`n` trades resampled from the export, ~10 opening per hour, durations as in the export."""
    rng = np.random.default_rng(seed)
    trades = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    tf_s = timeframe_to_seconds(timeframe)
    span_candles = max(1, n * 360 // tf_s)  # about one trade opening every 6 minutes
    start = pd.Timestamp("2024-01-01", tz="UTC").as_unit("us")
    opens = start + pd.to_timedelta(np.sort(rng.integers(0, span_candles, n)) * tf_s, unit="s")
    durations = pd.to_timedelta(trades["close_date"] - trades["open_date"]).to_numpy()
    trades["open_date"] = opens
    trades["close_date"] = opens + durations
    trades["trade_duration"] = durations.astype("timedelta64[m]").astype(int)
    return trades


def timed(func: Callable, trades: pd.DataFrame, timeframe: str) -> tuple[pd.DataFrame, float]:
    gc.collect()
    start = time.perf_counter()
    result = func(trades, timeframe)
    return result, time.perf_counter() - start


def traced(func: Callable, trades: pd.DataFrame, timeframe: str) -> tuple[pd.DataFrame, int]:
    """Result and peak traced memory of one untimed call (tracemalloc slows the original ~4x)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = func(trades, timeframe)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench(trades: pd.DataFrame, timeframe: str, reps: int, trace_original: bool) -> dict:
    optimized_result, optimized_peak = traced(analyze_trade_parallelism, trades, timeframe)
    original_peak = None
    if trace_original:
        original_result, original_peak = traced(ORIGINAL, trades, timeframe)
        assert_frame_equal(optimized_result, original_result, check_exact=True, check_freq=True)
    times: dict[str, list[float]] = {"original": [], "optimized": []}
    for rep in range(reps):
        # Alternate which one runs first so drifting machine load hits both alike.
        order = [("original", ORIGINAL), ("optimized", analyze_trade_parallelism)]
        results = {}
        for name, func in order if rep % 2 == 0 else reversed(order):
            results[name], elapsed = timed(func, trades, timeframe)
            times[name].append(elapsed)
        if rep == 0:  # the first run checks equality before any further run or report
            assert_frame_equal(
                results["optimized"], results["original"], check_exact=True, check_freq=True
            )
    original_s = statistics.median(times["original"])
    optimized_s = statistics.median(times["optimized"])
    return {
        "trades": len(trades),
        "candles": len(results["original"]),
        "reps": reps,
        "original_s": original_s,
        "optimized_s": optimized_s,
        "speedup": original_s / optimized_s,
        "original_peak": original_peak,
        "optimized_peak": optimized_peak,
    }


def megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.2f}MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions")
    parser.add_argument("--reps", type=int, help="timed runs per size (default 5 / 3 / 1)")
    parser.add_argument(
        "--memory", action="store_true", help="trace the original's memory at every size (slow)"
    )
    parser.add_argument("--timeframe", default="5m", help="candle timeframe (default 5m)")
    args = parser.parse_args()
    # The original triggers pandas' deprecation warning for Series.values on tz-aware dates.
    warnings.simplefilter("ignore", category=FutureWarning)
    warnings.simplefilter("ignore", category=DeprecationWarning)

    base = load_backtest_data(EXPORT)
    # (trades, timed runs): the original needs ~1 ms per trade, so big sizes get fewer runs.
    plan = [(1_250, 3), (5_000, 3)] if args.quick else [(1_250, 5), (5_000, 3), (20_000, 1)]
    print(
        f"analyze_trade_parallelism, timeframe {args.timeframe}: medians of alternating runs in"
        " one process; the first run of each size asserts identical results"
    )
    print(
        "peak memory: tracemalloc on separate untimed calls"
        + ("" if args.memory else " (original: smallest size only, use --memory for all)")
    )
    print(
        f"{'trades':>7} {'candles':>8} {'runs':>4} {'original':>10} {'optimized':>10}"
        f" {'speedup':>8} {'orig peak':>10} {'opt peak':>9}"
    )
    rows = []
    for i, (n, reps) in enumerate(plan):
        trades = make_trades(base, n, args.timeframe)
        row = bench(trades, args.timeframe, args.reps or reps, args.memory or i == 0)
        rows.append(row)
        print(
            f"{row['trades']:>7,} {row['candles']:>8,} {row['reps']:>4}"
            f" {row['original_s'] * 1e3:>8.1f}ms {row['optimized_s'] * 1e3:>8.2f}ms"
            f" {row['speedup']:>7.0f}x {megabytes(row['original_peak']):>10}"
            f" {megabytes(row['optimized_peak']):>9}",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    growth = last["trades"] / first["trades"]
    print(
        f"scaling x{growth:.0f} trades: original x{last['original_s'] / first['original_s']:.1f},"
        f" optimized x{last['optimized_s'] / first['optimized_s']:.1f}"
    )


if __name__ == "__main__":
    main()
