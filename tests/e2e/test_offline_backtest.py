"""The offline harness runs the real Freqtrade CLI without network, reproducibly, and the compare
module finds any difference in its results."""

from __future__ import annotations

import copy
import socket
import subprocess

import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests, compare_hyperopt
from freqtrade_opt_plugin.offline.netguard import (
    NetworkBlockedError,
    install_network_guard,
    uninstall_network_guard,
)
from freqtrade_opt_plugin.offline.workspace import (
    offline_command,
    run_backtest,
    run_hyperopt,
    subprocess_env,
)


BLOCKED = "blocked network access"


def test_backtest_runs_offline_with_static_markets(baseline_run, e2e_workspace):
    log = baseline_run.log_path.read_text()
    assert "Loaded 28 binance markets from the offline fixture" in log
    assert BLOCKED not in log
    assert "Could not load markets" not in log
    assert len(baseline_run.raw_trades) > 5
    assert set(baseline_run.trades["pair"]) <= set(e2e_workspace.pairs)
    # fees come from the fixture's markets (the config sets none)
    assert {t["fee_open"] for t in baseline_run.raw_trades} == {0.001}
    assert baseline_run.strategy_stats["total_trades"] == len(baseline_run.raw_trades)


def test_two_runs_with_the_same_env_are_identical(baseline_run, e2e_workspace, guarded_env):
    # the second run also has the network guard installed in every process
    again = run_backtest(e2e_workspace, guarded_env, name="again")
    assert BLOCKED not in again.log_path.read_text()
    verdict = compare_backtests(baseline_run, again)
    assert verdict.identical, verdict.summary()
    assert verdict.first_difference is None
    assert verdict.trades_left == verdict.trades_right == len(baseline_run.raw_trades)
    assert verdict.values_compared > 30 * len(baseline_run.raw_trades)
    # run-time fields do differ between runs, and are the only thing ignored
    assert baseline_run.result_dir != again.result_dir


def test_compare_names_a_changed_trade_field(baseline_run):
    changed = copy.deepcopy(baseline_run.stats)
    trade = changed["strategy"]["SampleStrategy"]["trades"][2]
    original = trade["close_rate"]
    trade["close_rate"] = original + 1e-9
    verdict = compare_backtests(baseline_run, changed)
    assert not verdict.identical
    diff = verdict.first_difference
    assert (diff.section, diff.trade_index, diff.field) == ("trades", 2, "close_rate")
    assert (diff.left, diff.right) == (original, original + 1e-9)
    assert "trade #2 close_rate" in verdict.summary()


def test_compare_finds_nested_type_metric_and_count_differences(baseline_run):
    stats = baseline_run.stats
    name = "SampleStrategy"

    order_changed = copy.deepcopy(stats)
    order_changed["strategy"][name]["trades"][0]["orders"][1]["cost"] += 0.01
    diff = compare_backtests(stats, order_changed).first_difference
    assert (diff.trade_index, diff.field) == (0, "orders[1].cost")

    int_for_float = copy.deepcopy(stats)
    int_for_float["strategy"][name]["trades"][1]["leverage"] = 1  # 1 == 1.0, but not identical
    diff = compare_backtests(stats, int_for_float).first_difference
    assert (diff.trade_index, diff.field, diff.right) == (1, "leverage", 1)

    metric_changed = copy.deepcopy(stats)
    metric_changed["strategy"][name]["sharpe"] = 123.0
    metric_changed["metadata"][name]["run_id"] = "another run"  # run-time: ignored
    diff = compare_backtests(stats, metric_changed).first_difference
    assert (diff.section, diff.field, diff.trade_index) == ("metrics", f"{name}.sharpe", None)

    trade_missing = copy.deepcopy(stats)
    trade_missing["strategy"][name]["trades"].pop()
    verdict = compare_backtests(stats, trade_missing)
    assert not verdict.identical
    assert verdict.trades_left == verdict.trades_right + 1


def test_network_guard_blocks_and_records():
    install_network_guard()
    try:
        with pytest.raises(NetworkBlockedError, match="api.binance.com"):
            socket.getaddrinfo("api.binance.com", 443)
        with pytest.raises(NetworkBlockedError):
            socket.create_connection(("203.0.113.1", 443), timeout=1)
    finally:
        uninstall_network_guard()


def test_a_network_attempt_fails_the_offline_cli_loudly(e2e_workspace, offline_env):
    """download-data needs the exchange: the guard must turn that into a visible failure."""
    args = [
        "download-data", "--config", str(e2e_workspace.config_path),
        "--userdir", str(e2e_workspace.user_data), "--datadir", str(e2e_workspace.root / "dl"),
        "--pairs", "BTC/USDT", "--timeframes", "1h", "--days", "1",
    ]
    proc = subprocess.run(
        offline_command(args), env=subprocess_env(offline_env), cwd=e2e_workspace.root,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode != 0
    assert BLOCKED in proc.stderr


def test_hyperopt_with_two_workers_runs_offline(e2e_workspace, guarded_env):
    from pathlib import Path

    run = run_hyperopt(e2e_workspace, guarded_env, epochs=2, jobs=2, random_state=11)
    log = run.log_path.read_text()
    assert "Effective number of parallel workers used: 2" in log
    assert BLOCKED not in log
    assert len(run.epochs) == 2
    assert all("loss" in e and "params_dict" in e for e in run.epochs)
    # the guard was active in the main process and in the worker processes
    guarded_processes = list(Path(guarded_env["FTOPT_E2E_GUARD_MARKERS"]).iterdir())
    assert len(guarded_processes) >= 3
    assert compare_hyperopt(run, run).identical


def test_generated_candles_are_deterministic_realistic_and_loadable(e2e_workspace, tmp_path):
    import numpy as np
    from freqtrade.data.history import load_pair_history

    from freqtrade_opt_plugin.offline.datagen import write_pair_data
    from freqtrade_opt_plugin.offline.markets import static_markets

    pair = e2e_workspace.pairs[2]
    again = write_pair_data(tmp_path, [pair], days=e2e_workspace.days, seed=e2e_workspace.seed)
    original = next(d for d in e2e_workspace.data if d.pair == pair)
    assert again[0].path.read_bytes() == original.path.read_bytes()
    assert original.gaps > 0 and original.zero_volume > 0

    candles = load_pair_history(pair, "5m", e2e_workspace.datadir, fill_up_missing=False)
    assert len(candles) == original.candles
    assert str(candles["date"].dt.tz) == "UTC"
    tick = static_markets()[pair]["precision"]["price"]
    for column in ("open", "high", "low", "close"):
        steps = candles[column].to_numpy() / tick
        assert np.allclose(steps, np.round(steps), rtol=0, atol=1e-6), column
    assert (candles["high"] >= candles[["open", "close"]].max(axis=1)).all()
    assert (candles["low"] <= candles[["open", "close"]].min(axis=1)).all()
