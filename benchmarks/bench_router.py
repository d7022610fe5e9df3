"""Per-call overhead of the Router: a trivial function called bare and through its Router.

Reports medians (ns per call) for the original path (level disabled), the optimized path
(100% rollout), a 50% rollout, the optimized path of an optimization that mutates its
arguments (the Router then snapshots the DataFrame argument), and two candidates on one target
(the outer one off by its flag; the outer one on, calling `wrapped`), and the same for a hot
candidate (`hot=True`, lean layer; off at activation the original itself is bound, so a hot
target that is off costs nothing: not shown), each minus the bare call.
Usage: python benchmarks/bench_router.py [--calls N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd

from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
from freqtrade_opt_plugin.router import make_router
from freqtrade_opt_plugin.settings import Settings


def target(frame, value):
    return value


def per_call_ns(func, calls: int, args) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        func(*args)
    return (time.perf_counter_ns() - start) / calls


def routed(level: OptimizationLevel, percentage: int = 100, mutates: bool = False,
           hot: bool = False):
    opt = Optimization(name="bench", target="m:target", replacement=target,
                       tier=OptimizationLevel.CONSERVATIVE, fingerprints={},
                       default_percentage=percentage, mutates_arguments=mutates, hot=hot)
    flags = Flags([opt], Settings(level=level))
    return make_router(opt, target, flags, Monitor(MonitorSettings(persist=False)))


def chained(outer_enabled: bool):
    """Two candidates on one target: an outer one (a cache in front) passing every call to
    `wrapped`, and the inner one; `outer_enabled=False` switches the outer one off by its flag."""
    def passing(wrapped):
        def replacement(frame, value):
            return wrapped(frame, value)
        return replacement

    outer = Optimization(name="outer", target="m:target", factory=passing, priority=100,
                         tier=OptimizationLevel.CONSERVATIVE, fingerprints={},
                         mutates_arguments=False)
    inner = Optimization(name="inner", target="m:target", replacement=target,
                         tier=OptimizationLevel.CONSERVATIVE, fingerprints={},
                         mutates_arguments=False)
    flags = Flags([outer, inner], Settings(level=OptimizationLevel.STANDARD,
                                           enabled={"outer": outer_enabled}))
    return make_router([outer, inner], target, flags, Monitor(MonitorSettings(persist=False)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    call_args = (pd.DataFrame({"close": [1.0, 2.0]}), 1)  # a frame argument gets snapshotted
    variants = {
        "original path (disabled)": routed(OptimizationLevel.DISABLED),
        "optimized path (100%)": routed(OptimizationLevel.STANDARD),
        "rollout 50%": routed(OptimizationLevel.STANDARD, 50),
        "optimized + snapshot": routed(OptimizationLevel.STANDARD, mutates=True),
        "2 candidates, outer off": chained(False),
        "2 candidates, outer->inner": chained(True),
        "hot, original path (disabled)": routed(OptimizationLevel.DISABLED, hot=True),
        "hot, optimized path (100%)": routed(OptimizationLevel.STANDARD, hot=True),
        "hot, optimized + snapshot": routed(OptimizationLevel.STANDARD, mutates=True, hot=True),
        "hot, rollout 50%": routed(OptimizationLevel.STANDARD, 50, hot=True),
    }
    samples: dict[str, list[float]] = {name: [] for name in ["bare", *variants]}
    for _ in range(args.repeat):
        samples["bare"].append(per_call_ns(target, args.calls, call_args))
        for name, func in variants.items():
            samples[name].append(per_call_ns(func, args.calls, call_args))
    bare = statistics.median(samples["bare"])
    print(f"bare call: {bare:8.0f} ns")
    for name in variants:
        median = statistics.median(samples[name])
        print(f"{name:30s}: {median:8.0f} ns/call, overhead {(median - bare) / 1000:6.2f} µs "
              f"(goal < 5 µs)")


if __name__ == "__main__":
    main()
