"""`trade_math` in a real offline backtest: trade-by-trade identical to stock, optimized paths ran.

Only the three trade_math optimizations are switched on (level disabled, per-optimization flags),
so the comparison with the shared stock baseline isolates them.
"""

from __future__ import annotations

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.workspace import run_backtest
from freqtrade_opt_plugin.optimizations.trade_math import OPTIMIZATIONS
from freqtrade_opt_plugin.telemetry_store import TelemetryStore


def test_backtest_with_trade_math_is_identical_to_stock(
    e2e_workspace, offline_env, baseline_run, tmp_path
):
    flags = {opt.env_name: "true" for opt in OPTIMIZATIONS}
    env = {**offline_env, **flags, "FREQTRADE_OPT_STATE_DIR": str(tmp_path)}
    run = run_backtest(e2e_workspace, env, name="trade-math")

    verdict = compare_backtests(baseline_run, run)
    assert verdict.identical, verdict
    assert len(run.trades) == len(baseline_run.trades) > 0

    totals = {(t.name, t.path): t for t in TelemetryStore(tmp_path / "telemetry.sqlite3").totals()}
    ratio = totals[("trade_math_profit_ratio", "optimized")]
    assert ratio.calls > 1000 and ratio.errors == 0 and ratio.fallbacks == 0
    assert totals[("trade_math_close_value", "optimized")].calls > 0
    assert totals[("trade_math_open_value", "optimized")].calls > 0
    assert not any(path == "original" and t.calls for (name, path), t in totals.items()
                   if name.startswith("trade_math"))
