"""Benchmark: one hyperopt epoch (``HyperOptimizer.generate_optimizer``), stock versus standard.

    python benchmarks/bench_epoch.py             # 10 pairs x 90 days, 5 rounds
    python benchmarks/bench_epoch.py --quick     # 3 pairs x 10 days
    python benchmarks/bench_epoch.py --profile   # also a cProfile of the standard epochs

Offline: a real ``Hyperopt`` (SampleStrategy, spaces buy sell, SharpeHyperOptLoss) built in this
process as ``freqtrade hyperopt`` builds it, ``prepare_hyperopt`` run once (the data file is
written). Then, per round, the same fixed parameter sets (asked from a seeded optuna study) are
evaluated alternating stock (every optimization off: level disabled) and standard; every result
dict must be identical (minus the clock fields) before anything is printed. Printed: the epoch
median per path and its ratio, and a per-phase breakdown (data load, backtest, strategy stats,
loss, rest) measured by timing wrappers around the calls ``generate_optimizer`` makes.

It also measures the main process's share of a ``-j 2`` run: Freqtrade calls ``gc.collect()``
after each batch of epochs while the workers wait; its cost grows with the objects the main
process tracks (the optuna study, the epochs' results, the loaded data, Freqtrade's modules).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The Routers must be installed when Freqtrade is imported; the level is switched per call below.
os.environ.setdefault("FREQTRADE_OPT_LEVEL", "standard")

#: Keys (any depth) that record when an epoch ran, not what it produced.
CLOCK_FIELDS = frozenset({"backtest_start_time", "backtest_end_time", "backtest_run_start_ts",
                          "backtest_run_end_ts", "run_id"})


def build_hyperopt(pairs: int, days: float, jobs: int = 1) -> Any:
    """A real, prepared ``Hyperopt`` for a fresh offline workspace (data file written)."""
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace, in_process_hyperopt

    root = Path(tempfile.mkdtemp(prefix="bench-epoch-"))
    workspace = create_workspace(root / "ws", default_pairs(pairs), days=days, seed=42)
    hyperopt = in_process_hyperopt(workspace, epochs=10, jobs=jobs, random_state=7)
    hyperopt.hyperopter.prepare_hyperopt()
    return hyperopt


def param_sets(hyperopt: Any, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` parameter dicts asked from a seeded study (the random start phase)."""
    study = hyperopt.hyperopter.get_optimizer(seed)
    return [dict(study.ask(hyperopt.hyperopter.o_dimensions).params) for _ in range(count)]


#: The optimizations of the epoch's result statistics (off in the "standard, lines off" path).
REPORT_LINES = ("report_result_line", "report_pair_lines", "report_tag_lines")
PATHS = {"disabled": ("disabled", ()), "standard": ("standard", ()),
         "std, lines off": ("standard", REPORT_LINES)}


def set_level(level: str, off: tuple[str, ...] = ()) -> None:
    """Switch this process's flags to `level`, with the optimizations named in `off` off."""
    import dataclasses

    from freqtrade_opt_plugin import activation
    from freqtrade_opt_plugin.registry import OptimizationLevel

    state = activation.current()
    if state is None:
        raise SystemExit("the plugin is not active in this process (FREQTRADE_OPT_AUTOLOAD off?)")
    state.flags.refresh(dataclasses.replace(
        state.flags.settings, level=OptimizationLevel.parse(level),
        enabled=dict.fromkeys(off, False)))


class Phases:
    """Timing wrappers around what ``generate_optimizer`` calls (installed once, both paths)."""

    def __init__(self, hyperopter: Any) -> None:
        from freqtrade.optimize.hyperopt import hyperopt_optimizer as module

        self.seconds: dict[str, float] = defaultdict(float)
        self._wrap_global(module, "load", "data load")
        self._wrap_global(module, "generate_strategy_stats", "strategy stats")
        self._wrap_attr(hyperopter.backtesting, "backtest", "backtest")
        self._wrap_attr(hyperopter, "calculate_loss", "loss")

    def _timed(self, func: Callable, phase: str) -> Callable:
        seconds = self.seconds

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - start
        return timed

    def _wrap_global(self, module: Any, name: str, phase: str) -> None:
        setattr(module, name, self._timed(getattr(module, name), phase))

    def _wrap_attr(self, obj: Any, name: str, phase: str) -> None:
        setattr(obj, name, self._timed(getattr(obj, name), phase))

    def gc_callback(self, phase: str, info: dict) -> None:
        """Time the automatic collections during an epoch (they overlap the other phases)."""
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.seconds[f"(gc gen{info['generation']})"] += time.perf_counter() - self._gc_start

    def take(self) -> dict[str, float]:
        taken = dict(self.seconds)
        self.seconds.clear()
        return taken


def strip_clock(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_clock(v) for k, v in value.items() if k not in CLOCK_FIELDS}
    if isinstance(value, list):
        return [strip_clock(v) for v in value]
    return value


def gc_cost(hyperopt: Any, params: list[dict[str, Any]], epochs: int, freeze: bool,
            repeats: int = 5) -> dict:
    """The main process of a ``-j 2`` run after `epochs` epochs: the ``gc.collect()`` Freqtrade
    runs after each batch (median of `repeats`) and the objects it traverses. With `freeze`, the
    objects alive before the epochs are frozen first, as ``hyperopt_gc_freeze`` does after
    ``prepare_hyperopt``."""
    hyperopter = hyperopt.hyperopter
    gc.collect()
    if freeze:
        gc.freeze()
    try:
        study = hyperopter.get_optimizer(11)
        kept = []
        for i in range(epochs):  # what the main process accumulates: the study's trials, results
            trial = study.ask(hyperopter.o_dimensions)
            val = hyperopter.generate_optimizer(params[i % len(params)])
            study.tell(trial, val["loss"])
            kept.append(val)
        gc.collect()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            gc.collect()
            times.append(time.perf_counter() - start)
        return {"traversed": len(gc.get_objects()), "frozen": gc.get_freeze_count(),
                "collect_s": statistics.median(times)}
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--params", type=int, default=3, help="parameter sets per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-gc", action="store_true", help="skip the gc.collect measurement")
    parser.add_argument("--lines-off", action="store_true",
                        help="also time standard with the report-line optimizations off")
    parser.add_argument("--gc-epochs", type=int, default=10,
                        help="epochs evaluated before the gc.collect measurement")
    args = parser.parse_args(argv)
    pairs = args.pairs or (3 if args.quick else 10)
    days = args.days or (10 if args.quick else 90)
    rounds = args.rounds or (3 if args.quick else 5)

    import logging

    from freqtrade_opt_plugin.equality import first_difference

    hyperopt = build_hyperopt(pairs, days)
    logging.disable(logging.INFO)
    hyperopter = hyperopt.hyperopter
    params = param_sets(hyperopt, args.params)
    phases = Phases(hyperopter)
    levels = tuple(PATHS) if args.lines_off else ("disabled", "standard")
    gc.callbacks.append(phases.gc_callback)

    walls: dict[str, list[float]] = {lv: [] for lv in levels}
    phase_sums: dict[str, dict[str, list[float]]] = {lv: defaultdict(list) for lv in levels}
    reference: dict[int, Any] = {}
    for _ in range(rounds + 1):  # the first round warms up (not timed) and checks the results
        warm = not reference
        for level in levels:
            set_level(*PATHS[level])
            for i, p in enumerate(params):
                phases.take()
                start = time.perf_counter()
                result = hyperopter.generate_optimizer(dict(p))
                wall = time.perf_counter() - start
                taken = phases.take()
                got = strip_clock(result)
                if i not in reference:
                    reference[i] = got
                elif (diff := first_difference(reference[i], got)) is not None:
                    raise SystemExit(f"level {level}, params #{i}: result differs: {diff}")
                if warm:
                    continue
                walls[level].append(wall)
                taken["rest"] = wall - sum(v for k, v in taken.items() if k[0] != "(")
                for phase, seconds in taken.items():
                    phase_sums[level][phase].append(seconds)
    set_level("standard")
    trades = [reference[i]["results_metrics"]["total_trades"] for i in reference]
    print(f"{pairs} pairs x {days:g} days, {len(params)} parameter sets ({trades} trades), "
          f"{rounds} rounds; results identical (minus clock fields)")

    base = statistics.median(walls["disabled"])
    print(f"{'phase':<16}" + "".join(f"{lv:>18}" for lv in levels) + f"{'ratio':>8}")
    names = ["data load", "backtest", "strategy stats", "loss", "rest", "(gc gen0)",
             "(gc gen1)", "(gc gen2)"]
    for phase in names:
        meds = [statistics.median(phase_sums[lv][phase] or [0.0]) if phase[0] != "("
                else sum(phase_sums[lv][phase]) / len(walls[lv]) for lv in levels]
        ratio = f"{meds[0] / meds[1]:>7.2f}x" if meds[1] > 0 else f"{'-':>8}"  # stock/standard
        print(f"{phase:<16}" + "".join(f"{m:>17.4f}s" for m in meds) + ratio)
    opt = statistics.median(walls["standard"])
    meds = [statistics.median(walls[lv]) for lv in levels]
    print(f"{'epoch':<16}" + "".join(f"{m:>17.4f}s" for m in meds) + f"{base / opt:>7.2f}x")
    print("ratio: disabled / standard" + (
        "; 'std, lines off': standard with report_result_line, report_pair_lines and "
        "report_tag_lines off" if args.lines_off else ""))

    print("(gc genN): automatic collections, mean per epoch, already part of the phases above")
    set_level("standard")
    gc.collect()
    gc.freeze()  # what freezing a worker's long-lived objects before its epochs would save
    frozen_walls: list[float] = []
    for p in params * rounds:
        phases.take()
        start = time.perf_counter()
        hyperopter.generate_optimizer(dict(p))
        frozen_walls.append(time.perf_counter() - start)
    taken = phases.take()
    gc.unfreeze()
    auto = sum(v for k, v in taken.items() if k.startswith("(gc"))
    unfrozen = sum(sum(phase_sums["standard"][g]) for g in names if g[0] == "(")
    print(f"standard, long-lived objects frozen first: epoch median "
          f"{statistics.median(frozen_walls):.4f}s, automatic gc "
          f"{auto / len(frozen_walls):.4f}s per epoch (vs "
          f"{unfrozen / len(walls['standard']):.4f}s unfrozen)")
    gc.callbacks.remove(phases.gc_callback)
    if not args.no_gc:
        set_level("standard")
        measured = {freeze: gc_cost(hyperopt, params, epochs=args.gc_epochs, freeze=freeze)
                    for freeze in (False, True)}
        for freeze, m in measured.items():
            print(f"main process gc.collect() per batch after {args.gc_epochs} epochs, "
                  f"{'frozen after prepare' if freeze else 'stock':<21}: "
                  f"{m['collect_s'] * 1000:7.1f} ms ({m['traversed']:,} objects traversed, "
                  f"{m['frozen']:,} frozen)")
        ratio = measured[False]["collect_s"] / measured[True]["collect_s"]
        print(f"gc.collect() per batch: {ratio:.1f}x less with hyperopt_gc_freeze")

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for p in params:
            hyperopter.generate_optimizer(dict(p))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
