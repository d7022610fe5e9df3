"""Benchmark: the cost of a recorded storing run, and of a hit, against stock (issue #12).

    python benchmarks/bench_reuse.py [--pairs 10] [--days 60] [--repeat 3]

One process, the demo workload (SampleStrategy on generated offline data). Per repetition, in this
order: a stock backtest (``backtest_one_strategy`` with Freqtrade's originals), a storing run (both
caches on, an empty state directory: the misses are recorded and stored), a hit (the same
state directory), and the same miss with the profile hook off (then nothing is stored: the
difference to the storing run is what recording and storing cost). Trades and metrics of every
run are checked identical to stock with ``offline.compare.compare_backtests`` before timings are
printed (medians, ratio to stock), then the caches' hit rates.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _run(workspace: Any, cached: bool) -> tuple[float, dict]:
    from freqtrade.configuration import Configuration
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting
    from freqtrade.optimize.optimize_reports import generate_backtest_stats
    from freqtrade.strategy.interface import IStrategy

    from freqtrade_opt_plugin.optimizations.reuse.backtest_results import (
        cached_backtest,
        original_backtest,
    )
    from freqtrade_opt_plugin.optimizations.reuse.indicators import (
        cached_advise_all_indicators,
        original_advise_all_indicators,
    )

    backtest, advise = original_backtest(), original_advise_all_indicators()

    def cached_bt(self, processed, start_date, end_date):
        return cached_backtest(backtest, self, processed, start_date, end_date)

    def cached_advise(self, data):
        return cached_advise_all_indicators(advise, self, data)

    cached_bt.__wrapped__ = backtest
    cached_advise.__wrapped__ = advise
    args = {"config": [str(workspace.config_path)], "user_data_dir": str(workspace.user_data),
            "strategy": workspace.strategy, "export": "none", "timeframe": workspace.timeframe,
            "backtest_cache": "none"}
    config = Configuration(args, RunMode.BACKTEST).get_config()
    installed = (vars(Backtesting)["backtest"], vars(IStrategy)["advise_all_indicators"])
    Backtesting.backtest = cached_bt if cached else backtest
    IStrategy.advise_all_indicators = cached_advise if cached else advise
    try:
        backtesting = Backtesting(config)
        data, timerange = backtesting.load_bt_data()
        start = time.perf_counter()
        min_date, max_date = backtesting.backtest_one_strategy(backtesting.strategylist[0], data,
                                                               timerange)
        elapsed = time.perf_counter() - start
    finally:
        Backtesting.backtest, IStrategy.advise_all_indicators = installed
    return elapsed, generate_backtest_stats(data, backtesting.all_bt_content, min_date, max_date)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args(argv)

    from freqtrade_opt_plugin.cache import caches
    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.datagen import DEFAULT_PAIRS
    from freqtrade_opt_plugin.offline.markets import install_static_markets
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    logging.disable(logging.WARNING)
    install_static_markets()
    from freqtrade_opt_plugin.optimizations.reuse.recording import Recorder

    times: dict[str, list[float]] = {"stock": [], "storing run": [], "hit": [],
                                     "miss, no hook": []}
    with tempfile.TemporaryDirectory() as tmp:
        workspace = create_workspace(Path(tmp) / "ws", DEFAULT_PAIRS[:options.pairs],
                                     days=options.days, seed=42)
        _run(workspace, cached=False)  # warm-up: imports, first loads
        for i in range(options.repeat):
            os.environ["FREQTRADE_OPT_STATE_DIR"] = str(Path(tmp) / f"state{i}")
            caches.configure()
            stock_time, stock = _run(workspace, cached=False)
            cold_time, cold = _run(workspace, cached=True)
            warm_time, warm = _run(workspace, cached=True)
            for label, stats in (("storing run", cold), ("hit", warm)):
                verdict = compare_backtests(stock, stats)
                if not verdict.identical:
                    print(f"{label} differs from stock: {verdict.first_difference.describe()}")
                    return 1
            times["stock"].append(stock_time)
            times["storing run"].append(cold_time)
            times["hit"].append(warm_time)
            status = caches.get_cache_status()["caches"]
            # the same miss without the profile hook (nothing stored): what recording costs
            os.environ["FREQTRADE_OPT_STATE_DIR"] = str(Path(tmp) / f"nohook{i}")
            caches.configure()
            Recorder.profile_hook = False
            try:
                times["miss, no hook"].append(_run(workspace, cached=True)[0])
            finally:
                Recorder.profile_hook = True
        caches.configure()
    base = statistics.median(times["stock"])
    print(f"\n== reuse: backtest_one_strategy, SampleStrategy, {options.pairs} pairs x "
          f"{options.days} days, median of {options.repeat} ==")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:>12}: {median * 1000:9.0f} ms   {median / base:5.2f}x stock")
    for name in ("analysis", "backtesting"):
        s = status[name]
        print(f"cache {name!r} (last repetition): hits {s['hits']}, misses {s['misses']}, "
              f"stores {s['stores']}, not stored {s['not_cacheable']}, hit rate {s['hit_rate']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
