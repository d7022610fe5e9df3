"""End to end: the real ``freqtrade backtesting`` (offline) run twice with indicator and result
reuse.

The second run must reuse every pair's indicators and the stored backtest result, and export
exactly the trades and metrics of the first run and of stock Freqtrade (plugin disabled).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]

#: Registers the indicator_cache optimization in the subprocesses if the built-in list of this
#: checkout does not include it yet (a no-op once it does).
SITECUSTOMIZE = '''\
try:
    import freqtrade_opt_plugin.optimizations as _builtin
    if "indicator_cache" not in _builtin.BUILTIN_MODULES:
        _builtin.BUILTIN_MODULES = (*_builtin.BUILTIN_MODULES, "indicator_cache")
except Exception as exc:  # pragma: no cover
    print("indicator_cache registration failed:", exc)
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    root = tmp_path_factory.mktemp("cache-e2e")
    return create_workspace(root / "ws", ("BTC/USDT", "ETH/USDT", "XRP/USDT"), days=6, seed=11)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    shim = tmp_path_factory.mktemp("shim")
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    state = tmp_path_factory.mktemp("state")
    paths = [str(shim), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    return {"PYTHONPATH": ":".join(paths), "FREQTRADE_OPT_STATE_DIR": str(state),
            "FREQTRADE_OPT_AUTOLOAD": "1"}


def test_second_backtest_reuses_indicators_with_identical_results(workspace, env):
    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.workspace import run_backtest

    stock = run_backtest(workspace, {**env, "FREQTRADE_OPT_LEVEL": "disabled"}, name="stock")
    cold = run_backtest(workspace, {**env, "FREQTRADE_OPT_LEVEL": "aggressive"}, name="cold")
    warm = run_backtest(workspace, {**env, "FREQTRADE_OPT_LEVEL": "aggressive"}, name="warm")
    no_results = run_backtest(workspace, {**env, "FREQTRADE_OPT_LEVEL": "aggressive",
                                          "FREQTRADE_OPT_CACHE_BACKTESTS": "false"},
                              name="no-result-cache")
    reused = "reused the stored result of an identical backtest"
    assert "reused cached indicators" not in cold.log_path.read_text()
    assert reused not in cold.log_path.read_text()
    assert "reused cached indicators of 3/3 pairs" in warm.log_path.read_text()
    assert reused in warm.log_path.read_text()
    assert reused not in no_results.log_path.read_text()
    assert len(stock.trades) > 0
    for run in (cold, warm, no_results):
        verdict = compare_backtests(stock, run)
        assert verdict.identical, verdict.summary()


def test_hyperopt_analyzing_per_epoch_reuses_indicators_with_identical_epochs(
        workspace, env, monkeypatch):
    from freqtrade_opt_plugin.cache import caches
    from freqtrade_opt_plugin.offline.compare import compare_hyperopt
    from freqtrade_opt_plugin.offline.workspace import run_hyperopt

    extra = ["--analyze-per-epoch"]  # indicators computed in every epoch, in the workers
    stock = run_hyperopt(workspace, {**env, "FREQTRADE_OPT_LEVEL": "disabled"}, extra,
                         name="hyperopt-stock", epochs=6, jobs=2)
    state = Path(env["FREQTRADE_OPT_STATE_DIR"]) / "hyperopt"
    cached = run_hyperopt(workspace, {**env, "FREQTRADE_OPT_LEVEL": "aggressive",
                                      "FREQTRADE_OPT_STATE_DIR": str(state)}, extra,
                          name="hyperopt-cached", epochs=6, jobs=2)
    verdict = compare_hyperopt(stock, cached)
    assert verdict.identical, verdict.summary()
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(state))
    caches.configure()
    try:
        analysis = caches.get_cache_status()["caches"]["analysis"]
    finally:
        caches.configure()
    # the buy/sell parameters SampleStrategy optimizes are not read by its indicators
    assert analysis["hits"] >= 3 * 3 and analysis["errors"] == 0
