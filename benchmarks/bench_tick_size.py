"""Benchmark: Freqtrade's `get_tick_size_over_time` against the plugin's vectorized version.

Both run in this process on fresh copies of the same candles, alternating (original first on
even repetitions, optimized first on odd ones; the cheap optimized one 5 times per repetition).
Outputs are checked equal before anything is timed. Reported: median wall time of each, their
ratio, peak traced memory of one call each (tracemalloc, numpy included) and how many prices
needed the per-value formatting fallback.

    python benchmarks/bench_tick_size.py            # 1x/4x/16x of 30 days of 5m, and a year
    python benchmarks/bench_tick_size.py --quick    # 1x only, fewer repetitions
    python benchmarks/bench_tick_size.py --full     # plus a year of three other markets
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import freqtrade.data.btanalysis.historic_precision as target_module
import numpy as np
import pandas as pd
from pandas.testing import assert_frame_equal, assert_series_equal

from freqtrade_opt_plugin.optimizations import tick_size as optimized_module


ORIGINAL = inspect.unwrap(target_module.get_tick_size_over_time)
OPTIMIZED = optimized_module.OPTIMIZATION.build(ORIGINAL)
BASE_ROWS = 30 * 24 * 12  # 30 days of 5m candles
YEAR_ROWS = 365 * 24 * 12
DATA = Path(__file__).parents[1] / "tests" / "data"


def random_walk(rows: int, start: float, tick: float, seed: int) -> pd.DataFrame:
    """OHLC of a log-normal random walk, every price rounded to the exchange's tick size."""
    rng = np.random.default_rng(seed)
    decimals = round(-np.log10(tick))

    def on_tick(prices: np.ndarray) -> np.ndarray:
        # integer number of ticks divided by 10**decimals: the double an exchange's JSON gives
        return np.rint(prices / tick) / 10.0**decimals

    close = on_tick(start * np.exp(np.cumsum(rng.normal(0.0, 0.002, rows))))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0.0, 0.0015, (2, rows))) * close
    high = on_tick(np.maximum(open_, close) + spread[0])
    low = on_tick(np.minimum(open_, close) - spread[1])
    return frame(rows, open_, high, low, close, rng.random(rows) * 1000)


def tiled_real(rows: int, seed: int) -> pd.DataFrame:
    """tests/data/ETH_BTC-5m tiled to `rows`, each tile scaled and re-rounded to 1e-8."""
    rng = np.random.default_rng(seed)
    sample = pd.read_feather(DATA / "ETH_BTC-5m.feather")
    tiles = -(-rows // len(sample))
    factors = np.repeat(1.0 + rng.normal(0.0, 0.05, tiles), len(sample))[:rows]
    columns = {}
    for col in ("open", "high", "low", "close", "volume"):
        values = np.tile(sample[col].to_numpy(), tiles)[:rows]
        columns[col] = np.rint(values * factors * 1e8) / 1e8 if col != "volume" else values
    return frame(
        rows, columns["open"], columns["high"], columns["low"], columns["close"], columns["volume"]
    )


def frame(rows: int, open_, high, low, close, volume) -> pd.DataFrame:
    dates = pd.date_range("2024-01-01", periods=rows, freq="5min", tz="UTC")
    return pd.DataFrame(
        {"date": dates, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def check_equal(candles: pd.DataFrame) -> None:
    expected_frame, actual_frame = candles.copy(), candles.copy()
    expected = ORIGINAL(expected_frame)
    actual = OPTIMIZED(actual_frame)
    assert_series_equal(actual, expected, check_exact=True, check_freq=True)
    assert_frame_equal(actual_frame, expected_frame, check_exact=True)


def fallback_count(candles: pd.DataFrame) -> int:
    """Prices the optimized version formatted one by one (its exact fallback)."""
    calls = 0
    slow = optimized_module._fraction_digits_slow

    def counting(value: float) -> float:
        nonlocal calls
        calls += 1
        return slow(value)

    optimized_module._fraction_digits_slow = counting
    try:
        OPTIMIZED(candles.copy())
    finally:
        optimized_module._fraction_digits_slow = slow
    return calls


def timed(func: Callable, candles: pd.DataFrame) -> float:
    data = candles.copy()
    gc.collect()
    start = time.perf_counter()
    func(data)
    return time.perf_counter() - start


def peak_memory(func: Callable, candles: pd.DataFrame) -> float:
    """Peak traced allocation of one call, MiB above what was allocated before it."""
    data = candles.copy()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        func(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base) / 2**20


def run_case(label: str, candles: pd.DataFrame, repetitions: int) -> dict:
    check_equal(candles)
    timed(ORIGINAL, candles.iloc[:500])  # warm up both paths
    timed(OPTIMIZED, candles.iloc[:500])
    original, optimized = [], []
    for rep in range(repetitions):  # the optimized version is cheap: 5 samples per repetition
        if rep % 2 == 0:
            original.append(timed(ORIGINAL, candles))
            optimized.extend(timed(OPTIMIZED, candles) for _ in range(5))
        else:
            optimized.extend(timed(OPTIMIZED, candles) for _ in range(5))
            original.append(timed(ORIGINAL, candles))
    row = {
        "case": label,
        "rows": len(candles),
        "original_ms": statistics.median(original) * 1e3,
        "optimized_ms": statistics.median(optimized) * 1e3,
        "original_peak_mib": peak_memory(ORIGINAL, candles),
        "optimized_peak_mib": peak_memory(OPTIMIZED, candles),
        "fallbacks": fallback_count(candles),
    }
    row["speedup"] = row["original_ms"] / row["optimized_ms"]
    print(
        f"{row['case']:<24} {row['rows']:>7} {row['original_ms']:>11.1f} "
        f"{row['optimized_ms']:>12.2f} {row['speedup']:>8.1f}x "
        f"{row['original_peak_mib']:>10.1f} {row['optimized_peak_mib']:>10.1f} "
        f"{row['fallbacks']:>9}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1x rows only, 3 repetitions")
    parser.add_argument("--full", action="store_true", help="also other markets over a year")
    args = parser.parse_args()

    print(
        f"get_tick_size_over_time: original vs optimized ({os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; medians, same process, alternating)"
    )
    print(
        f"{'case':<24} {'rows':>7} {'original ms':>11} {'optimized ms':>12} {'speedup':>9} "
        f"{'orig MiB':>10} {'opt MiB':>10} {'fallbacks':>9}"
    )
    scales = [1] if args.quick else [1, 4, 16]
    for scale in scales:
        rows = BASE_ROWS * scale
        reps = 3 if args.quick else (5 if scale < 16 else 3)
        run_case(f"alt/BTC 1e-8 x{scale}", random_walk(rows, 0.05, 1e-8, seed=scale), reps)
    if not args.quick:
        run_case("year alt/BTC 1e-8", random_walk(YEAR_ROWS, 0.05, 1e-8, seed=101), 3)
    if args.full:
        run_case("year BTC/USDT 0.01", random_walk(YEAR_ROWS, 42_000.0, 0.01, seed=102), 3)
        run_case("year tiled ETH_BTC", tiled_real(YEAR_ROWS, seed=103), 3)
        run_case("year meme/USDT 1e-10", random_walk(YEAR_ROWS, 3e-6, 1e-10, seed=104), 3)


if __name__ == "__main__":
    main()
