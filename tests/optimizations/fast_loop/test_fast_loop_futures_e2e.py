"""A whole ``freqtrade backtesting`` process on binance USDT-M futures (isolated margin, long and
short, 5x leverage, funding fees) with the fast trade loop, compared trade by trade and metric by
metric with stock Freqtrade (level disabled), offline."""

from __future__ import annotations

import dataclasses

import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest


STRATEGY = '''
from sample_strategy import SampleStrategy


class SampleFutures(SampleStrategy):
    """Freqtrade's SampleStrategy with its short signals on and 5x leverage."""

    can_short = True

    def leverage(self, pair, current_time, current_rate, proposed_leverage, max_leverage,
                 entry_tag, side, **kwargs) -> float:
        return 5.0
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-loop-futures-e2e")
    workspace = create_workspace(root / "ws", ("BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"),
                                 days=7, seed=23, trading_mode="futures")
    (workspace.user_data / "strategies" / "sample_futures.py").write_text(STRATEGY)
    workspace = dataclasses.replace(workspace, strategy="SampleFutures")
    stock = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "disabled"}, name="stock")
    # The result cache (outer on the same target) is off so the trade loop surely runs.
    fast_env = {"FREQTRADE_OPT_LEVEL": "aggressive", "FREQTRADE_OPT_BACKTEST_CACHE": "false"}
    fast = run_backtest(workspace, fast_env, name="fast-loop")
    return stock, fast


def test_whole_futures_backtest_process_matches_stock_trade_by_trade(runs):
    stock, fast = runs
    log = fast.log_path.read_text()
    assert "freqtrade-opt fast_loop: SampleFutures: eligible (futures" in log, log[-3000:]
    trades = stock.raw_trades
    assert len(trades) > 5
    assert {t["is_short"] for t in trades} == {True, False}
    assert {t["leverage"] for t in trades} == {5.0}
    assert any(t["funding_fees"] for t in trades)
    verdict = compare_backtests(stock, fast)
    assert verdict.identical, verdict.describe()
