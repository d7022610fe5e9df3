"""Benchmark: ``Backtesting.backtest``, stock Freqtrade versus the fast trade loop.

    python benchmarks/bench_fast_loop.py            # 10 pairs x 90 days, 3 repetitions
    python benchmarks/bench_fast_loop.py --quick    # 3 pairs x 10 days
    python benchmarks/bench_fast_loop.py --profile  # also a cProfile of the fast loop
    python benchmarks/bench_fast_loop.py --epoch    # as a hyperopt epoch: no wallet captures,
                                                    # no progress bar
    python benchmarks/bench_fast_loop.py --level aggressive   # the plugin's level (standard)
    python benchmarks/bench_fast_loop.py --detail 1m --pairs 5 --days 30
                                        # 5m main candles resampled from generated 1m candles,
                                        # backtested with timeframe-detail 1m

Offline: generated candles and SampleStrategy through one real `Backtesting` (static markets),
as ``backtest_one_strategy`` runs it. Each repetition runs, alternating, stock Freqtrade (every
optimization off, i.e. level disabled), the fast loop without the exit scanner (the driver
alone) and with it, at the plugin level given (other optimizations of that level on, e.g.
``ohlcv_lists``), every one on a deep copy of the same analysed data; the results are checked
identical first (whole result dict, trades, wallet captures). Printed: wall-time and thread-CPU
medians, their ratios, and the tracemalloc peak of one extra run of each.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(pairs: int, days: float, detail: str = "") -> tuple[Any, dict, Any, Any]:
    """A real Backtesting (offline), its analysed data and the backtest's date range; with
    `detail` (e.g. ``1m``), 5m candles made from generated `detail` candles and
    ``timeframe_detail`` set."""
    import json

    from freqtrade.data import history
    from freqtrade.data.converter import trim_dataframes

    from freqtrade_opt_plugin.offline.datagen import default_pairs, write_resampled
    from freqtrade_opt_plugin.offline.workspace import create_workspace, in_process_backtesting

    root = Path(tempfile.mkdtemp(prefix="bench-fast-loop-"))
    workspace = create_workspace(root / "ws", default_pairs(pairs), days=days, seed=42,
                                 timeframe=detail or "5m")
    if detail:
        write_resampled(workspace.datadir, workspace.data, "5m")
        workspace = dataclasses.replace(workspace, timeframe="5m")
        config = json.loads(workspace.config_path.read_text())
        config.update(timeframe="5m", timeframe_detail=detail)
        workspace.config_path.write_text(json.dumps(config))
    bt = in_process_backtesting(workspace)
    if detail and bt.timeframe_detail != detail:
        raise SystemExit(f"timeframe_detail not set: {bt.timeframe_detail!r}")
    data, timerange = bt.load_bt_data()
    processed = bt.strategy.advise_all_indicators(data)
    start, end = history.get_timerange(trim_dataframes(processed, timerange, bt.required_startup))
    return bt, processed, start, end


def at_level(level: str, func: Callable[..., dict]) -> Callable[..., dict]:
    """`func` run with the plugin's flags at `level` (``disabled``: every optimization off)."""
    from freqtrade_opt_plugin import activation
    from freqtrade_opt_plugin.registry import OptimizationLevel

    state = activation.current()
    if state is None:
        raise SystemExit("the plugin is not active in this interpreter (is it installed?)")
    settings = dataclasses.replace(state.flags.settings, level=OptimizationLevel.parse(level))

    def run(*args: Any) -> dict:
        state.flags.refresh(settings)
        return func(*args)

    return run


def runners(bt: Any, level: str) -> dict[str, Callable[..., dict]]:
    from freqtrade_opt_plugin.cache.backtest_results import original_backtest
    from freqtrade_opt_plugin.optimizations.fast_loop import driver, eligibility

    original = original_backtest()
    plan = eligibility.decide(bt)
    if not plan.eligible:
        raise SystemExit(f"the benchmark run is not eligible: {plan.reason}")
    alone = dataclasses.replace(plan, scanner=None, scanner_reason="benchmark: driver alone")

    def fast(plan: eligibility.Plan) -> Callable[..., dict]:
        return at_level(level, lambda self, processed, start, end: driver.run_backtest(
            self, processed, start, end, plan))

    found = {"stock": at_level("disabled", original), "driver alone": fast(alone)}
    if plan.scanner is not None:
        found["driver + exit scan"] = fast(plan)
    else:
        print(f"exit scanner unavailable: {plan.scanner_reason}")
    return found


def run(bt: Any, func: Callable[..., dict], processed: dict, start: Any, end: Any,
        ids: tuple[int, int]) -> tuple[dict, float, float]:
    bt.trade_id_counter, bt.order_id_counter = ids
    data = copy.deepcopy(processed)
    wall, cpu = time.perf_counter(), time.thread_time()
    result = func(bt, data, start, end)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def same(a: dict, b: dict, captures_a: list, captures_b: list) -> str | None:
    from freqtrade_opt_plugin.equality import first_difference

    plain = [{k: v for k, v in r.items() if k not in ("config", "locks")} for r in (a, b)]
    diff = first_difference(plain[0], plain[1])
    if diff is None and [x.to_json() for x in a["locks"]] != [x.to_json() for x in b["locks"]]:
        diff = "locks differ"
    return diff or first_difference(captures_a, captures_b, "wallet_captures")


def peak(bt: Any, func: Callable[..., dict], processed: dict, start: Any, end: Any,
         ids: tuple[int, int]) -> int:
    data = copy.deepcopy(processed)
    bt.trade_id_counter, bt.order_id_counter = ids
    tracemalloc.start()
    func(bt, data, start, end)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--epoch", action="store_true",
                        help="run as hyperopt epochs do (no wallet captures, no progress)")
    parser.add_argument("--level", default="standard",
                        help="the plugin's level for the fast paths (default: standard)")
    parser.add_argument("--detail", default="",
                        help="timeframe-detail (e.g. 1m) under 5m main candles made from it")
    args = parser.parse_args(argv)
    pairs = args.pairs or (3 if args.quick else 10)
    days = args.days or (10 if args.quick else 90)
    repeats = args.repeats or 3

    import logging

    bt, processed, start, end = build(pairs, days, args.detail)
    if args.epoch:
        bt._is_backtest_runmode = False
        bt.progress = None
    logging.disable(logging.INFO)
    ids = (bt.trade_id_counter, bt.order_id_counter)
    paths = runners(bt, args.level)
    reference, _, _ = run(bt, paths["stock"], processed, start, end, ids)
    captures = list(bt.wallet_captures)
    for name, func in paths.items():
        if name == "stock":
            continue
        got, _, _ = run(bt, func, processed, start, end, ids)
        if (diff := same(reference, got, captures, list(bt.wallet_captures))) is not None:
            raise SystemExit(f"{name}: result differs from the original: {diff}")
    detail = f", timeframe-detail {args.detail}" if args.detail else ""
    print(f"{pairs} pairs x {days:g} days{detail}, {len(reference['results'])} trades; "
          "results identical")

    walls: dict[str, list[float]] = {n: [] for n in paths}
    cpus: dict[str, list[float]] = {n: [] for n in paths}
    for _ in range(repeats):
        for name, func in paths.items():
            _, wall, cpu = run(bt, func, processed, start, end, ids)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall = statistics.median(walls["stock"])
    base_cpu = statistics.median(cpus["stock"])
    print(f"{'path':<22}{'wall median':>13}{'ratio':>8}{'cpu median':>13}{'ratio':>8}"
          f"{'peak MiB':>10}")
    for name in paths:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        memory = "" if args.no_memory else \
            f"{peak(bt, paths[name], processed, start, end, ids) / 2**20:10.1f}"
        print(f"{name:<22}{wall:12.3f}s{base_wall / wall:7.2f}x{cpu:12.3f}s"
              f"{base_cpu / cpu:7.2f}x{memory}")
    if args.profile:
        import cProfile
        import pstats

        name = "driver + exit scan" if "driver + exit scan" in paths else "driver alone"
        profile = cProfile.Profile()
        data = copy.deepcopy(processed)
        profile.enable()
        paths[name](bt, data, start, end)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
