"""The plugin in real, offline Freqtrade runs: identical results, and the optimized paths ran.

Stock runs use FREQTRADE_OPT_LEVEL=disabled (originals, timed); plugin runs use `standard`. Each
run writes its telemetry to its own state directory, read back with the telemetry store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests, compare_hyperopt
from freqtrade_opt_plugin.offline.workspace import run_backtest, run_hyperopt
from freqtrade_opt_plugin.telemetry_store import TelemetryStore


def _calls(state_dir: Path) -> dict[tuple[str, str], int]:
    store = TelemetryStore(state_dir / "telemetry.sqlite3")
    return {(t.name, t.path): t.calls for t in store.totals()}


@pytest.fixture(scope="module")
def plugin_run(e2e_workspace, offline_env, tmp_path_factory):
    state = tmp_path_factory.mktemp("state-standard")
    env = {**offline_env, "FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_STATE_DIR": str(state)}
    return run_backtest(e2e_workspace, env, name="standard"), state


def test_backtest_with_plugin_is_identical_to_stock(baseline_run, plugin_run):
    run, _ = plugin_run
    verdict = compare_backtests(baseline_run, run)
    assert verdict.identical, verdict
    assert len(run.trades) == len(baseline_run.trades) > 0


def test_backtest_with_plugin_took_the_optimized_paths(plugin_run):
    _, state = plugin_run
    calls = _calls(state)
    pairs = 3  # E2E_PAIRS
    assert calls[("tick_size", "optimized")] == pairs
    assert calls[("ohlcv_as_lists", "optimized")] == 1
    assert calls[("max_drawdown", "optimized")] > 0
    assert calls[("fast_loop", "optimized")] == 1
    standard = {"tick_size", "ohlcv_as_lists", "max_drawdown", "trade_parallelism", "fast_loop"}
    assert not any(path == "original" and n for (name, path), n in calls.items()
                   if name in standard)
    assert calls.get(("indicator_cache", "optimized"), 0) == 0  # tier aggressive: not at standard


def test_stock_level_runs_originals_as_timed_baseline(e2e_workspace, offline_env, tmp_path):
    env = {**offline_env, "FREQTRADE_OPT_STATE_DIR": str(tmp_path)}
    run_backtest(e2e_workspace, env, name="disabled-timed")
    calls = _calls(tmp_path)
    assert calls[("tick_size", "original")] == 3
    assert not any(path == "optimized" and n for (_, path), n in calls.items())


def test_kill_switch_leaves_no_telemetry(e2e_workspace, offline_env, tmp_path):
    env = {**offline_env, "FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_AUTOLOAD": "0",
           "FREQTRADE_OPT_STATE_DIR": str(tmp_path)}
    run_backtest(e2e_workspace, env, name="autoload-off")
    assert not (tmp_path / "telemetry.sqlite3").exists()


def test_hyperopt_workers_run_optimized_paths_with_identical_epochs(
    e2e_workspace, offline_env, tmp_path
):
    stock_env = {**offline_env, "FREQTRADE_OPT_STATE_DIR": str(tmp_path / "stock")}
    plugin_env = {**offline_env, "FREQTRADE_OPT_LEVEL": "standard",
                  "FREQTRADE_OPT_STATE_DIR": str(tmp_path / "plugin")}
    stock = run_hyperopt(e2e_workspace, stock_env, epochs=4, jobs=2, random_state=3,
                         loss="MaxDrawDownHyperOptLoss", name="ho-stock")
    plugin = run_hyperopt(e2e_workspace, plugin_env, epochs=4, jobs=2, random_state=3,
                          loss="MaxDrawDownHyperOptLoss", name="ho-plugin")
    verdict = compare_hyperopt(stock, plugin)
    assert verdict.identical, verdict
    assert len(plugin.epochs) == 4

    store = TelemetryStore(tmp_path / "plugin" / "telemetry.sqlite3")
    calls = {(t.name, t.path): t.calls for t in store.totals()}
    assert calls[("ohlcv_as_lists", "optimized")] >= 4  # once per epoch, in the workers
    assert calls[("max_drawdown", "optimized")] >= 4    # the loss function, per epoch
    assert calls[("fast_loop", "optimized")] >= 4       # the trade loop, per epoch
    assert calls[("report_result_line", "optimized")] >= 4 * 5  # report lines, per epoch
    assert calls[("report_pair_lines", "optimized")] >= 4 * 2
    assert calls[("report_tag_lines", "optimized")] >= 4 * 3
    assert calls[("hyperopt_gc_freeze", "optimized")] == 1  # the main process's run
    latest = store.runs()[0]
    assert latest["processes"] >= 2  # the main process and at least one worker reported
