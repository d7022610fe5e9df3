"""One monitored "run" of real work through the real Router and Flags, on a shared store.

Used by `test_load_proof` in-process and, as a script, as the second backtest running beside
it: ``python loadrun.py STORE RUN_ID LEVEL [slowed]``. The work is Freqtrade's own
``calculate_max_drawdown`` on the trades of ``tests/data/backtest-result.json`` (original ~5 ms CPU,
the plugin's replacement ~0.1-0.2 ms), under two names: ``mdd_paired`` at a 50% rollout
(judged on the optimized/original ratio of the same run) and ``mdd_full`` at 100% (judged on the
optimized path's thread CPU time).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import time
from pathlib import Path

import freqtrade.data.metrics as target_module
import pluggy
from freqtrade.data.btanalysis import load_backtest_data

from freqtrade_opt_plugin import hookspecs
from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.optimizations.max_drawdown import OPTIMIZATION
from freqtrade_opt_plugin.registry import OptimizationLevel
from freqtrade_opt_plugin.router import make_router
from freqtrade_opt_plugin.settings import Settings


ORIGINAL = inspect.unwrap(target_module.calculate_max_drawdown)
calculate_max_drawdown = OPTIMIZATION.build(ORIGINAL)
TRADES = Path(__file__).resolve().parents[1] / "data" / "backtest-result.json"
SLOWDOWN = 2.0
#: The alert threshold of these runs. The paired ratio of this ~microsecond replacement moved by
#: up to ~21% between idle runs on a busy 2-core CI machine (and ~15% beside a CPU hog): at the
#: default 15% that noise alone can complete a step; the test proves the rules, not the default.
THRESHOLD_PERCENT = 40.0


def slowed(*args, **kwargs):
    """The replacement, made 2x slower on purpose: it burns its own CPU time once more after."""
    start = time.thread_time()
    result = calculate_max_drawdown(*args, **kwargs)
    spent = time.thread_time() - start
    while time.thread_time() - start < SLOWDOWN * spent:
        pass
    return result


class Alerts:
    def __init__(self) -> None:
        self.alerts: list = []

    @pluggy.HookimplMarker(hookspecs.PROJECT)
    def freqtrade_opt_regression(self, alert) -> None:
        self.alerts.append(alert)


def run_once(store: Path, run_id: str, level: str, *, slow: bool = False,
             calls: int = 60) -> list:
    """One run: `calls` calls per name, then the monitor's end of run. Its alerts."""
    trades = load_backtest_data(TRADES)
    replacement = slowed if slow else calculate_max_drawdown
    opts = [dataclasses.replace(OPTIMIZATION, name=name, factory=None,
                                replacement=replacement)
            for name in ("mdd_paired", "mdd_full")]
    m = Monitor(MonitorSettings(memory_sample_rate=0, threshold_percent=THRESHOLD_PERCENT),
                store_path=store, run_id=run_id,
                owns_run=True)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    collector = Alerts()
    pm.register(collector)
    m.set_plugin_manager(pm)
    m.set_status_provider(lambda: {  # as activation does: the level is stored with the run
        "level": level, "active": [] if level == "disabled" else [o.name for o in opts]})
    flags = Flags(opts, Settings(level=OptimizationLevel.parse(level),
                                 percentage={"mdd_paired": 50}))
    routers = [make_router(opt, ORIGINAL, flags, m) for opt in opts]
    for _ in range(calls):
        for routed in routers:
            routed(trades, value_col="profit_abs", starting_balance=1000)
    m.close()  # end of run: final flush and the regression check of this run
    return collector.alerts


if __name__ == "__main__":
    found = run_once(Path(sys.argv[1]), sys.argv[2], sys.argv[3], slow="slowed" in sys.argv[4:])
    print(len(found))
