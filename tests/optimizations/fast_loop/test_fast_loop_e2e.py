"""A whole ``freqtrade backtesting`` process at level aggressive with the fast trade loop, compared
trade by trade and metric by metric with stock Freqtrade (level disabled), offline."""

from __future__ import annotations

import os

import pytest

from freqtrade_opt_plugin.offline.compare import compare_backtests
from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest


#: INTERIM (until the Router chains several candidates on one target): the backtest result cache
#: claims ``Backtesting.backtest`` first, so this run leaves it out to route the fast loop.
SITECUSTOMIZE = '''\
try:
    import freqtrade_opt_plugin.optimizations as _builtin
    _builtin.BUILTIN_MODULES = tuple(m for m in _builtin.BUILTIN_MODULES if m != "backtest_cache")
except Exception as exc:
    print("fast_loop e2e: sitecustomize failed:", exc)
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-loop-e2e")
    workspace = create_workspace(root / "ws", ("BTC/USDT", "ETH/USDT", "XRP/USDT"), days=10,
                                 seed=23)
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    stock = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "disabled"}, name="stock")
    fast = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "aggressive", "PYTHONPATH": path},
                        name="fast-loop")
    return stock, fast


def test_whole_backtest_process_matches_stock_trade_by_trade(runs):
    stock, fast = runs
    log = fast.log_path.read_text()
    assert "freqtrade-opt fast_loop: SampleStrategy: eligible" in log, log[-3000:]
    assert len(stock.raw_trades) > 5
    verdict = compare_backtests(stock, fast)
    assert verdict.identical, verdict.describe()
