"""Benchmark: the caching layer (eviction policy, hashing and serialization, indicator reuse).

    python benchmarks/bench_cache.py --eviction     # LRU vs least-recently-stored, 1/2/4 processes
    python benchmarks/bench_cache.py --micro        # hash / encode / decode / get / set; tick size
    python benchmarks/bench_cache.py --indicators   # advise_all_indicators: original, cold, warm
    python benchmarks/bench_cache.py --e2e          # the offline reference backtest, run twice
    python benchmarks/bench_cache.py --e2e --heavy  # the same with an indicator-heavy strategy
    python benchmarks/bench_cache.py                # all of the above (--quick: smaller)

Everything runs offline in temporary directories (never the user's cache). Timings are medians of
repetitions in one process (``--e2e``: of fresh ``freqtrade backtesting`` processes). Results are
checked identical before anything is timed: cached frames against the original's (content hash),
end-to-end trades and metrics with ``offline.compare.compare_backtests``.
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd


REPO = Path(__file__).resolve().parents[1]
#: An indicator-heavy variant of SampleStrategy (``--e2e --heavy``): same signals, plus 80 TA-Lib
#: columns and a rolling least-squares slope, so that indicators dominate the run.
HEAVY_STRATEGY = '''\
import numpy as np
import talib.abstract as ta
from pandas import DataFrame
from sample_strategy import SampleStrategy


def _slope(window: np.ndarray) -> float:
    return float(np.polyfit(np.arange(len(window)), window, 1)[0])


class HeavyStrategy(SampleStrategy):
    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe = super().populate_indicators(dataframe, metadata)
        for period in range(5, 205, 5):
            dataframe[f"ema_{period}"] = ta.EMA(dataframe, timeperiod=period)
            dataframe[f"rsi_{period}"] = ta.RSI(dataframe, timeperiod=period)
        dataframe["slope"] = dataframe["close"].rolling(48).apply(_slope, raw=True)
        return dataframe
'''
SITECUSTOMIZE = '''\
try:
    import freqtrade_opt_plugin.optimizations as _builtin
    if "indicator_cache" not in _builtin.BUILTIN_MODULES:
        _builtin.BUILTIN_MODULES = (*_builtin.BUILTIN_MODULES, "indicator_cache")
except Exception as exc:
    print("indicator_cache registration failed:", exc)
'''


def median_time(func: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms"


# -- eviction policy ---------------------------------------------------------------------------
def _reader(kind: str, directory: str, keys: list[str], reads: int, queue) -> None:
    latencies = []
    if kind == "plugin":
        from freqtrade_opt_plugin.cache.caches import SpecializedCache

        cache = SpecializedCache("bench", Path(directory), 2**30, 3600, timeout=60)
        get = cache.get
    else:
        import diskcache

        raw = diskcache.Cache(directory, eviction_policy=kind, timeout=60, cull_limit=0)
        get = raw.get
    start = time.perf_counter()
    for i in range(reads):
        t = time.perf_counter()
        get(keys[i % len(keys)])
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    if kind == "plugin":
        cache.close()
    latencies.sort()
    queue.put((wall, latencies[int(len(latencies) * 0.99)], latencies[-1]))


def eviction(quick: bool) -> None:
    import diskcache

    from freqtrade_opt_plugin.cache.caches import SpecializedCache

    print("\n== eviction policy: concurrent readers (hyperopt workers) ==")
    print(f"{'value':>6} {'procs':>5} {'policy':<34} {'reads/s':>9} {'p99':>9} {'max':>9}")
    context = multiprocessing.get_context("spawn")
    sizes = (64 * 1024,) if quick else (1024, 64 * 1024)
    for size in sizes:
        for procs in (1, 2, 4):
            for kind in ("least-recently-used", "least-recently-stored", "plugin"):
                rows = []
                for _ in range(1 if quick else 3):
                    parent = tempfile.mkdtemp(prefix="bench-evict-")  # private (0700)
                    directory = os.path.join(parent, "cache")
                    keys = [f"k{i:04d}" for i in range(200)]
                    payload = np.frombuffer(os.urandom(size), dtype=np.uint8)
                    if kind == "plugin":
                        cache = SpecializedCache("bench", Path(directory), 2**30, 3600, 60)
                        for key in keys:
                            cache.set(key, payload)
                        cache.close()
                    else:
                        raw = diskcache.Cache(directory, eviction_policy=kind, cull_limit=0)
                        for key in keys:
                            raw.set(key, payload.tobytes())
                        raw.close()
                    queue = context.Queue()
                    reads = 1000 if quick else 3000
                    workers = [context.Process(target=_reader,
                                               args=(kind, directory, keys, reads, queue))
                               for _ in range(procs)]
                    start = time.perf_counter()
                    for w in workers:
                        w.start()
                    results = [queue.get() for _ in workers]
                    for w in workers:
                        w.join()
                    wall = time.perf_counter() - start
                    shutil.rmtree(parent, ignore_errors=True)
                    rows.append((procs * reads / max(r[0] for r in results),
                                 max(r[1] for r in results), max(r[2] for r in results), wall))
                rate, p99, worst, _ = sorted(rows)[len(rows) // 2]
                label = {"plugin": "plugin (LRS + batched refresh)"}.get(kind, kind)
                print(f"{size // 1024:>4}KB {procs:>5} {label:<34} {rate:>9.0f} {ms(p99)} "
                      f"{ms(worst)}")


# -- micro benchmarks --------------------------------------------------------------------------
def _set_next(cache, keys, value) -> None:
    cache.set(next(keys), value)


def _on_copy(func, candles: pd.DataFrame) -> None:
    func(candles.copy())


def micro(quick: bool) -> None:
    from freqtrade.data.btanalysis import historic_precision

    from freqtrade_opt_plugin.cache import caches
    from freqtrade_opt_plugin.cache.decorators import tick_size_cached
    from freqtrade_opt_plugin.cache.disk import decode, encode
    from freqtrade_opt_plugin.cache.hashing import content_hash
    from freqtrade_opt_plugin.optimizations.tick_size import get_tick_size_over_time as fast

    print("\n== hashing, serialization, cache round trip (per frame) ==")
    print(f"{'rows x cols':>12} {'MB':>6} {'hash':>12} {'encode':>12} {'+verify':>12} "
          f"{'decode':>12} {'set':>12} {'get (hit)':>12}")
    repeat = 3 if quick else 7
    for rows, cols in ((8_640, 30), (105_120, 30)) if quick else (
            (8_640, 30), (105_120, 30), (105_120, 100), (525_600, 30)):
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.random((rows, cols)), columns=[f"c{i}" for i in range(cols)])
        frame.insert(0, "date", pd.date_range("2024-01-01", periods=rows, freq="5min", tz="UTC"))
        payload = encode(frame, verify=False).payload
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["FREQTRADE_OPT_STATE_DIR"] = tmp
            os.environ["FREQTRADE_OPT_CACHE_BACKTESTING_SIZE_MB"] = "4096"
            caches.configure()
            cache = caches.get_cache("backtesting")
            keys = (f"k{i}" for i in range(10**6))
            t_set = median_time(partial(_set_next, cache, keys, frame), repeat)
            cache.set("hit", frame)
            t_get = median_time(partial(cache.get, "hit"), repeat)
            caches.configure()
        print(f"{rows:>7} x {cols:<3} {frame.memory_usage().sum() / 2**20:6.1f} "
              f"{ms(median_time(partial(content_hash, frame), repeat))} "
              f"{ms(median_time(partial(encode, frame, verify=False), repeat))} "
              f"{ms(median_time(partial(encode, frame), repeat))} "
              f"{ms(median_time(partial(decode, payload), repeat))} {ms(t_set)} {ms(t_get)}")

    print("\n== tick size per pair: original, vectorized, cached hit ==")
    original = inspect.unwrap(historic_precision.get_tick_size_over_time)
    sample = pd.read_feather(REPO / "tests" / "data" / "ETH_BTC-5m.feather")
    for days in (60, 365):
        rows = days * 288
        tiles = -(-rows // len(sample))
        candles = pd.concat([sample] * tiles, ignore_index=True).iloc[:rows].copy()
        candles["date"] = pd.date_range("2024-01-01", periods=rows, freq="5min", tz="UTC")
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["FREQTRADE_OPT_STATE_DIR"] = tmp
            caches.configure()
            cached = tick_size_cached(fast)
            expected_frame = candles.copy()
            expected = original(expected_frame)
            got_frame = candles.copy()
            cached(got_frame)
            got_frame = candles.copy()
            got = cached(got_frame)  # a hit
            assert content_hash(got) == content_hash(expected)
            assert content_hash(got_frame) == content_hash(expected_frame)
            t_orig = median_time(partial(_on_copy, original, candles), 3)
            t_fast = median_time(partial(_on_copy, fast, candles), repeat)
            t_hit = median_time(partial(_on_copy, cached, candles), repeat)
            caches.configure()
        print(f"{days:>4} days ({rows} rows): original {ms(t_orig)}  vectorized {ms(t_fast)}  "
              f"cached hit {ms(t_hit)}")


# -- indicator reuse in one process ------------------------------------------------------------
def _backtesting(workspace) -> tuple[object, dict]:
    from freqtrade.configuration import Configuration
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.offline.markets import install_static_markets

    install_static_markets()
    args = {"config": [str(workspace.config_path)], "user_data_dir": str(workspace.user_data),
            "strategy": workspace.strategy, "export": "none", "timeframe": workspace.timeframe}
    config = Configuration(args, RunMode.BACKTEST).get_config()
    backtesting = Backtesting(config)
    data, _ = backtesting.load_bt_data()
    backtesting._set_strategy(backtesting.strategylist[0])
    return backtesting, data


def indicators(quick: bool) -> None:
    import logging

    from freqtrade_opt_plugin.cache import caches
    from freqtrade_opt_plugin.cache.hashing import content_hash
    from freqtrade_opt_plugin.cache.indicators import (
        cached_advise_all_indicators,
        original_advise_all_indicators,
    )
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    logging.disable(logging.INFO)
    print("\n== indicator reuse (SampleStrategy, in process) ==")
    print(f"{'pairs x days':>13} {'original':>12} {'cold (store)':>13} {'warm (hit)':>12} "
          f"{'warm speedup':>13}")
    original = original_advise_all_indicators()
    for pairs, days in ((3, 30),) if quick else ((3, 30), (10, 60), (10, 365)):
        with tempfile.TemporaryDirectory() as tmp:
            from freqtrade_opt_plugin.offline.datagen import DEFAULT_PAIRS

            workspace = create_workspace(Path(tmp) / "ws", DEFAULT_PAIRS[:pairs], days=days,
                                         seed=42)
            backtesting, data = _backtesting(workspace)
            strategy = backtesting.strategy
            expected = {p: content_hash(f) for p, f in original(strategy, data).items()}
            t_orig = median_time(partial(original, strategy, data), 3)
            colds = []
            for i in range(3):
                os.environ["FREQTRADE_OPT_STATE_DIR"] = str(Path(tmp) / f"state{i}")
                caches.configure()
                start = time.perf_counter()
                cold = cached_advise_all_indicators(original, strategy, data)
                colds.append(time.perf_counter() - start)
            warm = cached_advise_all_indicators(original, strategy, data)
            assert {p: content_hash(f) for p, f in cold.items()} == expected
            assert {p: content_hash(f) for p, f in warm.items()} == expected
            t_warm = median_time(partial(cached_advise_all_indicators, original, strategy, data), 5)
            t_cold = statistics.median(colds)
            caches.configure()
        print(f"{pairs:>5} x {days:<5} {ms(t_orig)} {ms(t_cold):>13} {ms(t_warm)} "
              f"{t_orig / t_warm:>12.1f}x")
    logging.disable(logging.NOTSET)


# -- end to end --------------------------------------------------------------------------------
def _phase(log: Path) -> float | None:
    """Seconds from 'Running backtesting' to 'Backtesting with' (indicators) in a run's log."""
    stamps = {}
    for line in log.read_text(errors="replace").splitlines():
        for key in ("Running backtesting for Strategy", "Backtesting with data from"):
            if key in line and key not in stamps:
                match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", line)
                if match:
                    stamps[key] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    if len(stamps) < 2:
        return None
    return (stamps["Backtesting with data from"]
            - stamps["Running backtesting for Strategy"]).total_seconds()


def e2e(quick: bool, pairs: int, days: int, repeat: int, heavy: bool = False) -> None:
    import dataclasses

    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.datagen import DEFAULT_PAIRS
    from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest

    if quick:
        pairs, days, repeat = 3, 10, 1
    name = "HeavyStrategy (SampleStrategy + 81 indicators)" if heavy else "SampleStrategy"
    print(f"\n== end to end: offline reference backtest ({pairs} pairs x {days} days, "
          f"{name}), fresh processes ==")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace = create_workspace(root / "ws", DEFAULT_PAIRS[:pairs], days=days, seed=42)
        if heavy:
            (workspace.user_data / "strategies" / "heavy_strategy.py").write_text(HEAVY_STRATEGY)
            workspace = dataclasses.replace(workspace, strategy="HeavyStrategy")
        shim = root / "shim"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
        base = {"PYTHONPATH": f"{shim}:{REPO}", "FREQTRADE_OPT_AUTOLOAD": "1"}
        stock = run_backtest(workspace, {**base, "FREQTRADE_OPT_LEVEL": "disabled",
                                         "FREQTRADE_OPT_STATE_DIR": str(root / "stock")},
                             name="stock")
        rows = []
        for i in range(repeat):
            env = {**base, "FREQTRADE_OPT_LEVEL": "aggressive",
                   "FREQTRADE_OPT_STATE_DIR": str(root / f"state{i}")}
            first = run_backtest(workspace, env, name=f"first{i}")
            second = run_backtest(workspace, env, name=f"second{i}")
            for run in (first, second):
                verdict = compare_backtests(stock, run)
                assert verdict.identical, verdict.summary()
            log = second.log_path.read_text()
            assert "reused cached indicators" in log
            assert "reused the stored result of an identical backtest" in log
            rows.append((first.wall_time, second.wall_time, _phase(first.log_path),
                         _phase(second.log_path)))
            print(f"  pair of runs {i}: first {first.wall_time:6.2f} s (indicators "
                  f"{rows[-1][2]:.2f} s), second {second.wall_time:6.2f} s (indicators "
                  f"{rows[-1][3]:.2f} s); trades identical ({len(stock.trades)} trades)")
        first_t = statistics.median(r[0] for r in rows)
        second_t = statistics.median(r[1] for r in rows)
        print(f"stock freqtrade {stock.wall_time:.2f} s; median first run {first_t:.2f} s, "
              f"second run {second_t:.2f} s: second/first = {second_t / first_t:.2f} "
              f"({first_t / second_t:.2f}x); indicator phase "
              f"{statistics.median(r[2] for r in rows):.2f} s -> "
              f"{statistics.median(r[3] for r in rows):.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eviction", action="store_true")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--indicators", action="store_true")
    parser.add_argument("--e2e", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--pairs", type=int, default=10, help="e2e: pairs (demo default 10)")
    parser.add_argument("--days", type=int, default=60, help="e2e: days (demo default 60)")
    parser.add_argument("--repeat", type=int, default=3, help="e2e: pairs of runs")
    parser.add_argument("--heavy", action="store_true",
                        help="e2e: an indicator-heavy strategy instead of SampleStrategy")
    args = parser.parse_args(argv)
    everything = not (args.eviction or args.micro or args.indicators or args.e2e)
    os.environ["FREQTRADE_OPT_AUTOLOAD"] = "0"  # this process: the original functions
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.eviction or everything:
        eviction(args.quick)
    if args.micro or everything:
        micro(args.quick)
    if args.indicators or everything:
        indicators(args.quick)
    if args.e2e or everything:
        e2e(args.quick, args.pairs, args.days, args.repeat, args.heavy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
