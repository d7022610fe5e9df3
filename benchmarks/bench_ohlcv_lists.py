"""Benchmark: `Backtesting._get_ohlcv_as_lists`, Freqtrade's original vs `ohlcv_as_lists`.

Both run side by side in one process on the same inputs (alternating order, several reps) with
signals already computed (the strategy's populate_entry/exit_trend only copy precomputed columns),
so the time is the conversion itself plus the unchanged per-pair steps (signal hooks, cache, trim).
Reported: peak extra memory during the call (tracemalloc: peak above the pre-call level, split
into the result that stays and the transient overhead), median wall and CPU time and their ratio
(whole method, and without the time spent in the strategy's identical ``ft_advise_signals``), and
the ratio at 1x/4x/16x rows. Outputs are asserted equal (values and types, cell by cell) first.

    python benchmarks/bench_ohlcv_lists.py            # 20 pairs x 365 days of 5m, 36 indicators
    python benchmarks/bench_ohlcv_lists.py --quick    # 4 pairs x 60 days
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from freqtrade.configuration import TimeRange
from freqtrade.data.dataprovider import DataProvider
from freqtrade.enums import CandleType
from freqtrade.optimize.backtesting import Backtesting
from freqtrade.strategy import IStrategy


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freqtrade_opt_plugin.optimizations.ohlcv_lists import _get_ohlcv_as_lists  # noqa: E402


ORIGINAL: Callable = inspect.unwrap(Backtesting._get_ohlcv_as_lists)
OPTIMIZED: Callable = _get_ohlcv_as_lists
CANDLES_PER_DAY = 288
STARTUP = 30
CONFIG = {
    "strategy": "BenchSignalsStrategy",
    "stake_currency": "USDT",
    "dry_run": True,
    "timeframe": "5m",
    "trading_mode": "spot",
    "margin_mode": "",
    "candle_type_def": CandleType.SPOT,
    "exchange": {"name": "binance", "pair_whitelist": []},
    "stake_amount": 10,
    "max_open_trades": 3,
    "dry_run_wallet": 1000,
    "runmode": "backtest",
}


class BenchSignalsStrategy(IStrategy):
    """Signals are precomputed in the data: the strategy only copies them into place."""

    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {"0": 0.1}
    stoploss = -0.1
    startup_candle_count = STARTUP

    def populate_indicators(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        dataframe["enter_long"] = dataframe["pre_enter_long"]
        dataframe["enter_tag"] = dataframe["pre_enter_tag"]
        return dataframe

    def populate_exit_trend(self, dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        dataframe["exit_long"] = dataframe["pre_exit_long"]
        return dataframe


def make_pair(rows: int, indicators: int, seed: int) -> pd.DataFrame:
    """Random-walk OHLCV (tick-rounded), indicator columns and precomputed signals."""
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.002, rows))), 2)
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.round(np.abs(rng.normal(0, 0.1, rows)), 2)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=rows, freq="5min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": np.round(rng.gamma(2.0, 50.0, rows), 3),
        }
    )
    for i in range(indicators):
        frame[f"ind_{i}"] = rng.normal(50, 10, rows)
    # `.loc[cond, "enter_long"] = 1` leaves float64 with NaN elsewhere: the common case.
    frame["pre_enter_long"] = np.where(rng.random(rows) < 0.02, 1.0, np.nan)
    frame["pre_exit_long"] = np.where(rng.random(rows) < 0.02, 1.0, np.nan)
    tags = np.where(frame["pre_enter_long"].to_numpy() == 1, "ind_cross", "")
    frame["pre_enter_tag"] = pd.array(tags, dtype="str")
    return frame


def make_processed(pairs: int, rows: int, indicators: int) -> dict[str, pd.DataFrame]:
    return {f"PAIR{i}/USDT": make_pair(rows, indicators, seed=i) for i in range(pairs)}


def make_backtesting(strategy: IStrategy) -> Backtesting:
    """A Backtesting with just what the method uses (no exchange, no network)."""
    bt = Backtesting.__new__(Backtesting)
    bt.config = CONFIG
    bt.strategy = strategy
    bt.dataprovider = DataProvider(CONFIG, None)
    strategy.dp = bt.dataprovider
    bt.timeframe = "5m"
    bt.timerange = TimeRange(None, None, 0, 0)
    bt.required_startup = STARTUP
    bt.progress = None
    bt.abort = False
    return bt


def fresh(template: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Independent inputs for one call (Copy-on-Write: no data is copied until written)."""
    return {pair: frame.copy(deep=False) for pair, frame in template.items()}


def assert_same(expected: dict, got: dict) -> None:
    """Same pairs, rows, cell values (NaN-aware) and cell types; Timestamps with the same unit."""
    assert list(expected) == list(got), "pairs differ"
    for pair, rows in expected.items():
        other = got[pair]
        assert len(rows) == len(other), f"{pair}: {len(rows)} vs {len(other)} rows"
        equal = rows == other  # C-speed; False on NaN cells (other objects): checked below
        for i, (row, row2) in enumerate(zip(rows, other, strict=True)):
            assert type(row) is list and type(row2) is list and len(row) == len(row2)
            assert list(map(type, row)) == list(map(type, row2)), f"{pair} row {i}: types"
            if not equal:
                for a, b in zip(row, row2, strict=True):
                    same = a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
                    assert same, f"{pair} row {i}: {a!r} vs {b!r}"
        if rows:
            assert rows[0][0].unit == other[0][0].unit and rows[0][0].tz == other[0][0].tz


class Timing:
    """Per call: wall and CPU time of the whole method, and CPU time outside the strategy's
    ``ft_advise_signals`` (the conversion: identical signal hooks are subtracted)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.conversion: list[float] = []

    def add(self, wall: float, cpu: float, signals: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.conversion.append(cpu - signals)

    def medians(self) -> tuple[float, float, float]:
        return tuple(statistics.median(x) for x in (self.wall, self.cpu, self.conversion))


def timed(func: Callable, strategy: IStrategy, template: dict, timing: Timing) -> None:
    processed = fresh(template)
    bt = make_backtesting(strategy)
    in_signals = [0.0]
    advise = type(strategy).ft_advise_signals

    def timed_advise(dataframe, metadata):
        start = time.process_time()
        try:
            return advise(strategy, dataframe, metadata)
        finally:
            in_signals[0] += time.process_time() - start

    strategy.ft_advise_signals = timed_advise
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        result = func(bt, processed)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        del strategy.ft_advise_signals
    timing.add(wall, cpu, in_signals[0])
    del result, processed
    gc.collect()


def compare_times(strategy: IStrategy, template: dict, reps: int) -> tuple[Timing, Timing]:
    original, optimized = Timing(), Timing()
    for rep in range(reps):
        order = ((ORIGINAL, original), (OPTIMIZED, optimized))
        for func, timing in order if rep % 2 == 0 else reversed(order):
            timed(func, strategy, template, timing)
    return original, optimized


def report_times(original: Timing, optimized: Timing, label: str) -> None:
    print(f"{label:>22s}   {'original':>10s} {'optimized':>10s}   ratio  speed-up")
    names = ("wall, whole method", "CPU, whole method", "CPU, conversion only")
    for name, a, b in zip(names, original.medians(), optimized.medians(), strict=True):
        print(f"{name:>22s}   {a * 1000:7.1f} ms {b * 1000:7.1f} ms   {b / a:.3f}  {a / b:5.1f}x")


def traced_call(func: Callable, strategy: IStrategy, template: dict) -> tuple[dict, int, int]:
    """(result, peak extra bytes during the call, bytes still held by the result after it)."""
    processed = fresh(template)
    bt = make_backtesting(strategy)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = func(bt, processed)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del processed
    gc.collect()
    return result, peak - base, current - base


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, fewer repetitions")
    parser.add_argument("--pairs", type=int, help="number of pairs (default 20, quick 4)")
    parser.add_argument("--days", type=int, help="days of 5m candles (default 365, quick 60)")
    parser.add_argument("--indicators", type=int, default=36, help="indicator columns")
    parser.add_argument("--reps", type=int, help="timing repetitions (default 3, quick 3)")
    args = parser.parse_args()
    pairs = args.pairs or (4 if args.quick else 20)
    days = args.days or (60 if args.quick else 365)
    reps = args.reps or 3
    rows = days * CANDLES_PER_DAY

    strategy = BenchSignalsStrategy(CONFIG)
    print(f"pandas {pd.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(f"{pairs} pairs x {days} days of 5m ({rows} rows), {args.indicators} indicator columns")
    started = time.perf_counter()
    template = make_processed(pairs, rows, args.indicators)

    # one traced call each: the outputs are compared, the memory reported (timing comes after)
    expected, peak_o, kept_o = traced_call(ORIGINAL, strategy, template)
    got, peak_n, kept_n = traced_call(OPTIMIZED, strategy, template)
    assert_same(expected, got)
    del expected, got
    gc.collect()
    print(f"outputs equal (values and types, every cell)   [{time.perf_counter() - started:.0f} s]")
    print("\npeak extra memory (tracemalloc)      original        optimized    ratio")
    print(f"  peak during the call           {mib(peak_o)}   {mib(peak_n)}   {peak_n / peak_o:.3f}")
    print(f"  held by the result             {mib(kept_o)}   {mib(kept_n)}   {kept_n / kept_o:.3f}")
    print(
        f"  transient (peak - result)      {mib(peak_o - kept_o)}   {mib(peak_n - kept_n)}   "
        f"{(peak_n - kept_n) / (peak_o - kept_o):.3f}"
    )

    print()
    report_times(*compare_times(strategy, template, reps), f"median of {reps}")
    print(f"[{time.perf_counter() - started:.0f} s]")
    base_rows = max(rows // 16, STARTUP + 2)
    print(f"\nscaling (1 pair, {args.indicators} indicators, median of {reps}; CPU ms, ratio)")
    print("   rows     whole method (orig / opt / ratio)    conversion only (orig / opt / ratio)")
    for factor in (1, 4, 16):
        scaled = make_processed(1, base_rows * factor, args.indicators)
        original, optimized = compare_times(strategy, scaled, reps)
        _, cpu_o, conv_o = original.medians()
        _, cpu_n, conv_n = optimized.medians()
        print(
            f"{base_rows * factor:7d}   {cpu_o * 1000:8.1f} {cpu_n * 1000:8.1f}  "
            f"{cpu_n / cpu_o:.3f}"
            f"              {conv_o * 1000:8.1f} {conv_n * 1000:8.1f}  {conv_n / conv_o:.3f}"
        )

    print(f"[{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
