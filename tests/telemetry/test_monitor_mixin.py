"""OptimizationMixin: activation, counters, the end-of-run summary, and unchanged trades."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import pickle

import pytest

from freqtrade_opt_plugin import mixin as mixin_module
from freqtrade_opt_plugin import monitor as mon
from freqtrade_opt_plugin.mixin import OptimizationMixin, summary_lines


class _Base:
    def __init__(self, config):
        self.config = config

    def populate_indicators(self, dataframe, metadata):
        return dataframe


class _Strategy(OptimizationMixin, _Base):
    pass


@pytest.fixture
def activations(monkeypatch):
    calls: list[int] = []
    import freqtrade_opt_plugin

    monkeypatch.setattr(freqtrade_opt_plugin, "activate", lambda: calls.append(1))
    return calls


@pytest.fixture(autouse=True)
def _clean_monitor(global_monitor):
    """Every test here runs on the process-wide monitor of tests/telemetry/conftest.py."""
    yield


def test_init_activates_and_calls_the_strategy_init(activations, global_monitor):
    strategy = _Strategy({"a": 1})
    assert strategy.config == {"a": 1}
    assert activations == [1]
    assert global_monitor.owns_run and global_monitor._run_exported  # workers will inherit it
    assert mixin_module._summary_registered
    assert "_Strategy" in mixin_module._strategy_names


def test_unpickling_in_a_worker_activates(activations):
    strategy = _Strategy({"a": 1})
    strategy.extra = [1, 2]
    clone = pickle.loads(pickle.dumps(strategy))
    assert clone.config == {"a": 1} and clone.extra == [1, 2]
    assert activations == [1, 1]


def test_activation_failure_is_logged_not_raised(monkeypatch, caplog):
    import freqtrade_opt_plugin

    def broken():
        raise RuntimeError("no")

    monkeypatch.setattr(freqtrade_opt_plugin, "activate", broken)
    monkeypatch.setattr(mixin_module, "_activation_failed", False)
    with caplog.at_level(logging.WARNING):
        _Strategy({})
        _Strategy({})
    assert caplog.text.count("activation from OptimizationMixin failed") == 1


def test_mixin_overrides_no_trading_callback():
    from freqtrade.strategy import IStrategy

    own = {name for name, _ in vars(OptimizationMixin).items() if not name.startswith("__")}
    assert own <= {"opt_summary_at_exit", "opt_counters", "opt_report"}
    trading = {name for name, value in vars(IStrategy).items() if inspect.isfunction(value)}
    assert not (set(vars(OptimizationMixin)) - {"__init__", "__setstate__"}) & trading
    assert "__setstate__" not in vars(IStrategy)


def test_counters_and_report(activations, global_monitor):
    strategy = _Strategy({})
    global_monitor.record("f", "optimized", 0.001)
    global_monitor.record("f", "original", 0.003)
    counters = strategy.opt_counters()
    assert counters["f"]["optimized_calls"] == 1 and counters["f"]["original_calls"] == 1
    assert counters["f"]["adoption_rate"] == 0.5
    report = strategy.opt_report()
    assert report["functions"][0]["function"] == "f"
    assert report["system"]["scope"] == f"run {global_monitor.run_id}"


def test_summary_fits_one_screen(activations, global_monitor, caplog):
    for i in range(10):
        global_monitor.record(f"optimization_{i}", "optimized", 0.001)
        global_monitor.record(f"optimization_{i}", "original", 0.002)
    report = mon.generate_performance_report(run=global_monitor.run_id)
    lines = summary_lines(report)
    assert len(lines) <= 2 + 10 + 5 and lines[0].startswith("freqtrade-opt summary (run ")
    assert "20 routed calls" in lines[0] and "50.0% optimized" in lines[0]
    with caplog.at_level(logging.INFO, logger="freqtrade_opt_plugin.mixin"):
        mixin_module.log_summary()
    assert "optimization_9" in caplog.text


MIXIN_STRATEGY = '''
from freqtrade_opt_plugin.mixin import OptimizationMixin
from sample_strategy import SampleStrategy


class MixinSampleStrategy(OptimizationMixin, SampleStrategy):
    pass
'''


def test_same_backtest_with_and_without_the_mixin(tmp_path):
    """A real offline `freqtrade backtesting`, once per strategy: the trades are identical."""
    workspace_mod = pytest.importorskip("freqtrade_opt_plugin.offline.workspace")
    compare = pytest.importorskip("freqtrade_opt_plugin.offline.compare")
    ws = workspace_mod.create_workspace(tmp_path / "ws", ["BTC/USDT", "ETH/USDT"], days=20)
    (ws.user_data / "strategies" / "mixin_strategy.py").write_text(MIXIN_STRATEGY)
    env = {"FREQTRADE_OPT_STATE_DIR": str(tmp_path / "state")}
    plain = workspace_mod.run_backtest(ws, env, name="plain")
    mixed_ws = dataclasses.replace(ws, strategy="MixinSampleStrategy")
    mixed = workspace_mod.run_backtest(mixed_ws, env, name="mixin")
    assert len(plain.raw_trades) > 0
    verdict = compare.compare_trades(plain.raw_trades, mixed.raw_trades)
    assert verdict.identical, verdict
    log = mixed.log_path.read_text()
    assert "freqtrade-opt summary" in log
    assert "freqtrade-opt summary" not in plain.log_path.read_text()
