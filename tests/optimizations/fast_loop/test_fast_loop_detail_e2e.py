"""A whole ``freqtrade backtesting --timeframe-detail 1m`` process with the fast trade loop,
compared trade by trade and metric by metric with stock Freqtrade (level disabled), offline:
5m main candles resampled from generated 1m candles, the 1m candles as detail data."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.datagen import write_resampled
from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-loop-detail-e2e")
    detail = create_workspace(root / "ws", ("BTC/USDT", "ETH/USDT", "XRP/USDT"), days=10,
                              seed=29, timeframe="1m")
    write_resampled(detail.datadir, detail.data, "5m")
    workspace = dataclasses.replace(detail, timeframe="5m")
    args = ["--timeframe-detail", "1m"]
    stock = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "disabled"}, args, name="stock")
    fast_env = {"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_BACKTEST_CACHE": "false"}
    fast = run_backtest(workspace, fast_env, args, name="fast-loop")
    return stock, fast


def test_whole_detail_backtest_process_matches_stock_trade_by_trade(runs):
    stock, fast = runs
    log = fast.log_path.read_text()
    assert "fast_loop: SampleStrategy: eligible" in log, log[-3000:]
    assert "timeframe-detail 1m" in log, log[-3000:]
    trades = stock.raw_trades
    assert len(trades) > 5
    # the detail timeframe mattered: some trade closed between two 5m candles
    assert any(pd.Timestamp(t["close_date"]).minute % 5 for t in trades)
    verdict = compare_backtests(stock, fast)
    assert verdict.identical, verdict.describe()
