"""A whole ``freqtrade backtesting`` process at level aggressive with the fast trade loop, compared
trade by trade and metric by metric with stock Freqtrade (level disabled), offline."""

from __future__ import annotations

import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-loop-e2e")
    workspace = create_workspace(root / "ws", ("BTC/USDT", "ETH/USDT", "XRP/USDT"), days=10,
                                 seed=23)
    stock = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "disabled"}, name="stock")
    # The result cache (outer on the same target) is off so the trade loop surely runs.
    fast_env = {"FREQTRADE_OPT_LEVEL": "aggressive", "FREQTRADE_OPT_BACKTEST_CACHE": "false"}
    fast = run_backtest(workspace, fast_env, name="fast-loop")
    return stock, fast


def test_whole_backtest_process_matches_stock_trade_by_trade(runs):
    stock, fast = runs
    log = fast.log_path.read_text()
    assert "freqtrade-opt fast_loop: SampleStrategy: eligible" in log, log[-3000:]
    assert len(stock.raw_trades) > 5
    verdict = compare_backtests(stock, fast)
    assert verdict.identical, verdict.describe()
