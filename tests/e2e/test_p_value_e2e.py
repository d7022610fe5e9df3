"""A real offline backtest at level standard: results identical to stock (p-value included),
the ``p_value`` replacement ran, and the process never loaded scipy.stats."""

from __future__ import annotations

import json
import subprocess
import sys

from freqtrade.data.btanalysis import load_backtest_stats

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.workspace import backtest_args, subprocess_env
from freqtrade_opt_plugin.telemetry_store import TelemetryStore


#: ``python -m freqtrade_opt_plugin.offline`` that also reports, at its end, the state of
#: scipy.stats in that process.
_RUN_AND_REPORT = """
import json, sys
from freqtrade_opt_plugin.offline.__main__ import main
code = main(sys.argv[1:])
from freqtrade_opt_plugin import lazy_imports
with open(REPORT, "w") as report:
    json.dump({"imported": "scipy.stats" in sys.modules,
               "deferred": lazy_imports.is_deferred("scipy.stats"),
               "decision": lazy_imports.decision}, report)
sys.exit(code)
"""


def test_standard_backtest_is_identical_and_never_loads_scipy_stats(
    e2e_workspace, offline_env, baseline_run, tmp_path
):
    result_dir = tmp_path / "result"
    result_dir.mkdir()
    report = tmp_path / "report.json"
    env = {**offline_env, "FREQTRADE_OPT_LEVEL": "standard",
           "FREQTRADE_OPT_STATE_DIR": str(tmp_path)}
    code = _RUN_AND_REPORT.replace("REPORT", repr(str(report)))
    proc = subprocess.run(
        [sys.executable, "-c", code, *backtest_args(e2e_workspace, result_dir)],
        env=subprocess_env(env), cwd=e2e_workspace.root, capture_output=True, text=True,
        timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    stats = load_backtest_stats(result_dir)
    verdict = compare_backtests(baseline_run, stats)
    assert verdict.identical, verdict
    assert stats["strategy"][e2e_workspace.strategy]["p_value"] == \
        baseline_run.strategy_stats["p_value"]

    state = json.loads(report.read_text())
    assert state == {"imported": True, "deferred": True,
                     "decision": "deferred until first use (level standard >= tier standard)"}

    totals = {(t.name, t.path): t for t in TelemetryStore(tmp_path / "telemetry.sqlite3").totals()}
    optimized = totals[("p_value", "optimized")]
    assert optimized.calls >= 1 and optimized.errors == 0 and optimized.fallbacks == 0
    assert ("p_value", "original") not in totals or totals[("p_value", "original")].calls == 0
