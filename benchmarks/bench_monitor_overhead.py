"""Benchmark: what monitoring costs.

1. ``record()`` per call (the Router calls it once per routed call), against an empty call with
   the same signature; without a store, and with the store and its batched flushes amortized.
2. ``should_sample_memory()`` per call, and what tracing one sampled call costs.
3. One flush: 10 optimizations x 2 paths, 1,000 records each since the previous flush.
4. End to end (unless ``--no-e2e``): the reference offline backtest (the demo's: 10 pairs x 60 days
   of 5m candles, SampleStrategy, level standard) run alternately with the monitor working and
   with every monitor entry point replaced by a no-op. Reported: the median wall times, and the
   time spent inside monitor code in the monitored runs (measured with perf_counter around each
   monitor entry point, including the final flush at exit) as a share of the run.

    python benchmarks/bench_monitor_overhead.py              # all, 3 runs each way end to end
    python benchmarks/bench_monitor_overhead.py --runs 5
    python benchmarks/bench_monitor_overhead.py --no-e2e     # micro-benchmarks only (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from freqtrade_opt_plugin.monitor import (  # noqa: E402
    Monitor,
    MonitorSettings,
    start_memory_trace,
    stop_memory_trace,
)


def per_call_ns(fn, number: int = 200_000, repeat: int = 7) -> float:
    """Median over `repeat` rounds of the time per call, in ns."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def bench_record(tmp: Path) -> dict[str, float]:
    def empty(name, path, seconds, *, cpu_seconds=None, error=False, fallback=False,
              peak_bytes=None):
        return None

    memory_only = Monitor(MonitorSettings(persist=False), run_id="bench-mem")
    stored = Monitor(MonitorSettings(), store_path=tmp / "bench.sqlite3", run_id="bench-store")
    stored.record("f", "optimized", 1e-3)
    stored.flush()  # open the store outside the measurement
    toggle = [0]

    def alternate(m: Monitor):
        def call():
            toggle[0] ^= 1
            m.record("f", "optimized" if toggle[0] else "original", 1e-3)
        return call

    def alternate_empty():
        toggle[0] ^= 1
        empty("f", "optimized" if toggle[0] else "original", 1e-3)

    base = per_call_ns(alternate_empty)
    results = {
        "empty call (same signature)": base,
        "record(), no store": per_call_ns(alternate(memory_only)),
        "record(), store, flushes amortized": per_call_ns(alternate(stored), number=100_000),
        "should_sample_memory()": per_call_ns(lambda: memory_only.should_sample_memory("f")),
        "cpu_start()": per_call_ns(lambda: memory_only.cpu_start("f", "optimized")),
    }
    return results


def bench_flush(tmp: Path, rounds: int = 20) -> dict[str, float]:
    m = Monitor(MonitorSettings(flush_every=10**9, flush_interval=1e9),
                store_path=tmp / "flush.sqlite3", run_id="bench-flush")
    m.record("warmup", "optimized", 1e-3)
    m.flush()
    times = []
    for _ in range(rounds):
        for i in range(1000):
            for f in range(10):
                m.record(f"opt{f}", "optimized" if i % 2 else "original", 1e-3 + i * 1e-7)
        start = time.perf_counter()
        m.flush()
        times.append(time.perf_counter() - start)
    store_bytes = m.store().size_bytes()
    return {"flush of 20 (function, path) pairs x 500 records, ms": statistics.median(times) * 1e3,
            "store size after 20 flushes, KiB": store_bytes / 1024}


def bench_memory_trace() -> dict[str, float]:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(np.random.default_rng(1).random((100_000, 6)), columns=list("abcdef"))

    def work():
        return (frame["a"] * frame["b"]).rolling(20).mean().to_numpy().tolist()[:10]

    def traced():
        start_memory_trace()
        work()
        stop_memory_trace()

    plain = statistics.median(timeit.repeat(work, number=5, repeat=7)) / 5
    with_trace = statistics.median(timeit.repeat(traced, number=5, repeat=7)) / 5
    return {"pandas call (100k rows), ms": plain * 1e3,
            "same call traced (sampled), ms": with_trace * 1e3,
            "traced/plain": with_trace / plain}


DRIVER = r"""
import atexit, json, os, sys, time
out_path, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
spent = {"seconds": 0.0, "calls": 0}
def dump():
    spent["wall"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(spent, f)
atexit.register(dump)  # registered first: runs last, after the monitor's final flush
t0 = time.perf_counter()
from freqtrade_opt_plugin import monitor as m
if mode == "off":
    m.Monitor.record = lambda self, *a, **k: None
    m.Monitor.flush = lambda self, **k: True
    m.Monitor.close = lambda self: None
    m.Monitor.should_sample_memory = lambda self, name: False
    m.Monitor.cpu_start = lambda self, name, path: None
else:
    perf = time.perf_counter
    def timed(fn):
        def wrapper(*a, **k):
            start = perf()
            try:
                return fn(*a, **k)
            finally:
                spent["seconds"] += perf() - start
                spent["calls"] += 1
        return wrapper
    for name in ("record", "flush", "close", "should_sample_memory", "cpu_start"):
        setattr(m.Monitor, name, timed(getattr(m.Monitor, name)))
from freqtrade_opt_plugin.offline.__main__ import main
code = main(args)
sys.exit(code)
"""


def bench_end_to_end(runs: int, pairs: int, days: int) -> dict[str, object]:
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import (
        backtest_args,
        create_workspace,
        subprocess_env,
    )

    root = Path(tempfile.mkdtemp(prefix="freqtrade-opt-bench-monitor-"))
    try:
        return _end_to_end(root, runs, pairs, days, create_workspace, backtest_args,
                           subprocess_env, default_pairs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _end_to_end(root, runs, pairs, days, create_workspace, backtest_args, subprocess_env,
                default_pairs) -> dict[str, object]:
    workspace = create_workspace(root / "ws", default_pairs(pairs), days=days)
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    walls: dict[str, list[float]] = {"on": [], "off": []}
    inside: list[float] = []
    monitor_calls: list[int] = []
    for i in range(runs):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            result_dir = root / f"run-{mode}-{i}"
            result_dir.mkdir()
            out = root / f"spent-{mode}-{i}.json"
            env = subprocess_env({"FREQTRADE_OPT_LEVEL": "standard",
                                  "FREQTRADE_OPT_STATE_DIR": str(root / "state")})
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, str(driver), str(out), mode,
                 *backtest_args(workspace, result_dir)],
                env=env, cwd=root, check=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=1800,
            )
            walls[mode].append(time.perf_counter() - start)
            if mode == "on":
                spent = json.loads(out.read_text())
                inside.append(spent["seconds"] / spent["wall"])
                monitor_calls.append(spent["calls"])
    on, off = statistics.median(walls["on"]), statistics.median(walls["off"])
    return {
        "workspace": f"{pairs} pairs x {days} days ({workspace.candles:,} candles)",
        "runs each way": runs,
        "wall, monitor on (median s)": on,
        "wall, monitor off (median s)": off,
        "difference of medians (%)": (on / off - 1) * 100,
        "spread of 'off' runs (max-min, % of median)": (max(walls["off"]) - min(walls["off"]))
        / off * 100,
        "time inside monitor code (% of run, median)": statistics.median(inside) * 100,
        "monitor entry-point calls per run": statistics.median(monitor_calls),
        "all walls": {k: [round(v, 2) for v in vals] for k, vals in walls.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs each way")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end backtests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sections = {
            "record (ns per call)": bench_record(Path(tmp)),
            "flush": bench_flush(Path(tmp)),
            "memory sampling": bench_memory_trace(),
        }
    if not args.no_e2e:
        sections["end to end"] = bench_end_to_end(args.runs, args.pairs, args.days)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for title, values in sections.items():
        print(f"\n{title}")
        for key, value in values.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"  {key:<48} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
