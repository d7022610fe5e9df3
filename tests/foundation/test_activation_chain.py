"""Activation with several optimizations on one target: one Router, per-candidate checks."""

import inspect

import freqtrade.data.btanalysis.trade_parallelism as tp

from freqtrade_opt_plugin.registry import fingerprint


PLUGIN = """
from freqtrade_opt_plugin.hookspecs import hookimpl
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
CALLS = []
TARGET = "freqtrade.data.btanalysis.trade_parallelism:evaluate_result_multi"


def noting(label):
    def factory(wrapped):
        def evaluate_result_multi(trades, timeframe, max_open_trades):
            CALLS.append(label)
            return wrapped(trades, timeframe, max_open_trades)
        return evaluate_result_multi
    return factory


def candidate(name, priority, fp):
    return Optimization(name=name, target=TARGET, factory=noting(name), priority=priority,
                        tier=OptimizationLevel.CONSERVATIVE, fingerprints={"2026.9": fp})


@hookimpl
def freqtrade_opt_register_optimizations():
    # registered first, outermost and switched off by its flag: the others must still run
    return [candidate("multi_cache", 100, "{fp}"), candidate("multi_drifted", 50, "0000"),
            candidate("multi_fast", 0, "{fp}")]
"""

CODE = """
import json
import pandas as pd
import freqtrade.data.btanalysis as pkg
import chain_opt
from freqtrade_opt_plugin.router import candidates_of
from freqtrade_opt_plugin.commands.status import collect_status
trades = pd.DataFrame({"pair": ["A/B"], "open_date": [pd.Timestamp("2024-01-01", tz="UTC")],
                       "close_date": [pd.Timestamp("2024-01-01 01:00", tz="UTC")]})
pkg.evaluate_result_multi(trades, "5m", 1)
rows = {r["name"]: r for r in collect_status()["optimizations"] if r["name"].startswith("multi")}
print(json.dumps({
    "calls": chain_opt.CALLS,
    "chain": [o.name for o in candidates_of(pkg.evaluate_result_multi)],
    "installed": {n: r["installed"] for n, r in rows.items()},
    "drifted": rows["multi_drifted"]["reason"],
}))
"""


def test_one_router_holds_every_verified_candidate(run_python, plugin_site):
    fp = fingerprint(inspect.unwrap(tp.evaluate_result_multi))
    site = plugin_site("chain_opt", PLUGIN.replace("{fp}", fp))
    out, _ = run_python(CODE, PYTHONPATH=site, FREQTRADE_OPT_LEVEL="conservative",
                        FREQTRADE_OPT_MULTI_CACHE="false")
    assert out["chain"] == ["multi_cache", "multi_fast"]  # the drifted one is left out
    assert out["calls"] == ["multi_fast"]
    assert out["installed"] == {"multi_cache": True, "multi_drifted": False, "multi_fast": True}
    assert "differs from every verified version" in out["drifted"]

    out, _ = run_python(CODE, PYTHONPATH=site, FREQTRADE_OPT_LEVEL="conservative")
    assert out["calls"] == ["multi_cache", "multi_fast"]
