"""Backtest result reuse: a hit returns exactly the original's result, and every input change
is a miss.

Each run is a freshly built ``Backtesting`` (real exchange object on the offline markets
fixture, real strategy file, real data files), run like ``backtest_one_strategy`` does, with
``backtest`` going through `cached_backtest`: like a new ``freqtrade backtesting`` process.
"""

from __future__ import annotations

import json
import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from freqtrade_opt_plugin.cache.hashing import content_hash
from freqtrade_opt_plugin.equality import first_difference


PAIRS = ("BTC/USDT", "ETH/USDT", "XRP/USDT")
REUSED = "reused the stored result of an identical backtest"

STRATEGY = '''
import talib.abstract as ta
from pandas import DataFrame

from freqtrade.strategy import IStrategy, IntParameter

THRESHOLD = {threshold}


class ResultCacheStrategy(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {{"0": 0.02}}
    stoploss = {stoploss}
    startup_candle_count = 30
    rsi_entry = IntParameter(20, 60, default=45, space="buy")

    @property
    def protections(self):
        return [{{"method": "CooldownPeriod", "stop_duration_candles": 6}}]

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        dataframe["ema"] = ta.EMA(dataframe, timeperiod=20)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rsi"] < self.rsi_entry.value, ["enter_long", "enter_tag"]] = (
            1, "rsi")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rsi"] > 70, "exit_long"] = 1
        return dataframe

    def custom_exit(self, pair, trade, current_time, current_rate, current_profit, **kwargs):
        frame, _ = self.dp.get_analyzed_dataframe(pair, self.timeframe)
        if current_profit < -THRESHOLD and frame.iloc[-1]["close"] < frame.iloc[-1]["ema"]:
            return "below_ema"
        return None
{extra}
'''


#: As ``user_data_template``'s OptimizedSampleStrategy: a user class without methods of its own.
MIXIN_STRATEGY = '''
from freqtrade.templates.sample_strategy import SampleStrategy

from freqtrade_opt_plugin.mixin import OptimizationMixin


class MixinSampleStrategy(OptimizationMixin, SampleStrategy):
    """SampleStrategy with the plugin's mixin."""
{extra}
'''


@dataclass
class Outcome:
    result: dict[str, Any]
    backtesting: Any
    reused: bool
    stats: dict[str, Any]


class Engine:
    """Runs backtests of a workspace in this process, through the backtest result cache."""

    def __init__(self, workspace: Any) -> None:
        self.workspace = workspace
        self.messages: list[str] = []  # the plugin's log messages
        self.write_strategy()

    @property
    def strategy_file(self) -> Path:
        return self.workspace.user_data / "strategies" / "result_cache_strategy.py"

    def write_strategy(self, threshold: float = 0.01, stoploss: float = -0.05,
                       extra: str = "") -> None:
        self.strategy_file.write_text(STRATEGY.format(
            threshold=threshold, stoploss=stoploss, extra=textwrap.indent(extra, " " * 4)))

    def config(self, runmode: Any = None, **overrides: Any) -> dict[str, Any]:
        from freqtrade.commands.optimize_commands import setup_optimize_configuration
        from freqtrade.enums import RunMode

        args = {
            "config": [str(self.workspace.config_path)],
            "user_data_dir": str(self.workspace.user_data),
            "strategy": "ResultCacheStrategy", "timeframe": "5m", "export": "none",
            "backtest_cache": "none", "enable_protections": True,
        }
        config = setup_optimize_configuration(args, RunMode.BACKTEST)
        if runmode is not None:
            config["runmode"] = runmode
        config.update(overrides)
        return config

    def run(self, *, cached: bool = True, **config: Any) -> Outcome:
        from freqtrade.optimize.backtesting import Backtesting
        from freqtrade.optimize.optimize_reports import generate_backtest_stats

        from freqtrade_opt_plugin.cache.backtest_results import cached_backtest, original_backtest

        original = original_backtest()  # passed as it is: no test code runs in the trade loop

        def backtest(self, processed, start_date, end_date):
            return cached_backtest(original, self, processed, start_date, end_date)

        seen = len(self.messages)
        backtesting = Backtesting(self.config(**config))
        installed = vars(Backtesting)["backtest"]  # a Router when the plugin is active
        Backtesting.backtest = backtest if cached else original
        try:
            data, timerange = backtesting.load_bt_data()
            strategy = backtesting.strategylist[0]
            min_date, max_date = backtesting.backtest_one_strategy(strategy, data, timerange)
        finally:
            Backtesting.backtest = installed
        reused = cached and any(REUSED in m for m in self.messages[seen:])
        stats = generate_backtest_stats(data, backtesting.all_bt_content, min_date, max_date)
        name = strategy.get_strategy_name()
        return Outcome(backtesting.all_bt_content[name], backtesting, reused, stats)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    root = tmp_path_factory.mktemp("result-cache")
    return create_workspace(root / "ws", PAIRS, days=8, seed=7)


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def engine(workspace, cache_dir):
    """An `Engine`; the plugin's log messages are collected on its own logger (Freqtrade's
    configuration replaces the root logger's handlers, pytest's capture included)."""
    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )

    engine = Engine(workspace)
    plugin_logger = logging.getLogger("freqtrade_opt_plugin")
    handler = _Collect(engine.messages)
    level = plugin_logger.level
    plugin_logger.addHandler(handler)
    plugin_logger.setLevel(logging.DEBUG)
    install_static_markets()
    yield engine
    uninstall_static_markets()
    plugin_logger.removeHandler(handler)
    plugin_logger.setLevel(level)


#: Fields that differ between any two runs (wall-clock times of the run).
RUN_TIMES = ("backtest_start_time", "backtest_end_time", "backtest_run_start_ts",
             "backtest_run_end_ts")


def assert_same_result(left: Outcome, right: Outcome) -> None:
    """Same result dict (values, types, dtypes) and the same Freqtrade statistics."""
    a = {k: v for k, v in left.result.items() if k not in ("config", "locks", *RUN_TIMES)}
    b = {k: v for k, v in right.result.items() if k not in ("config", "locks", *RUN_TIMES)}
    assert list(left.result) == list(right.result)
    assert first_difference(a, b) is None, first_difference(a, b)
    assert content_hash(a) == content_hash(b)
    assert [lock.to_json() for lock in left.result["locks"]] == \
        [lock.to_json() for lock in right.result["locks"]]
    assert right.result["config"] is right.backtesting.strategy.config

    def stats(outcome: Outcome) -> dict:
        found = dict(next(iter(outcome.stats["strategy"].values())))
        for key in RUN_TIMES:
            found.pop(key, None)
        return found

    assert first_difference(stats(left), stats(right)) is None, \
        first_difference(stats(left), stats(right))


def counters(backtesting: Any) -> dict[str, Any]:
    from freqtrade_opt_plugin.optimizations.reuse.restore import _COUNTERS

    return {name: getattr(backtesting, name) for name in sorted(_COUNTERS)}


def test_second_run_reuses_the_exact_result(engine):
    stock = engine.run(cached=False)
    cold = engine.run()
    warm = engine.run()
    assert len(stock.result["results"]) > 5
    assert stock.result["locks"], "the test strategy's protections should lock pairs"
    assert (stock.result["results"]["exit_reason"] == "below_ema").any()
    assert not cold.reused and warm.reused, [m for m in engine.messages if "not stored" in m]
    assert_same_result(stock, cold)
    assert_same_result(stock, warm)
    assert counters(warm.backtesting) == counters(stock.backtesting)
    assert warm.backtesting.rejected_dict == stock.backtesting.rejected_dict

    from freqtrade.persistence import PairLocks

    assert [lock.to_json() for lock in PairLocks.get_all_locks()] == \
        [lock.to_json() for lock in stock.result["locks"]]


@pytest.mark.parametrize("change", ["candle", "strategy source", "parameter value",
                                    "module constant", "config value", "fee"])
def test_every_input_change_is_a_miss(engine, change):
    engine.run()  # stored (a hit of the same inputs: test_second_run_reuses_the_exact_result)
    overrides: dict[str, Any] = {}
    if change == "candle":
        path = engine.workspace.datadir / "ETH_USDT-5m.feather"
        frame = pd.read_feather(path)
        saved = frame.copy()
        frame.loc[len(frame) - 100, "close"] *= 1.0001
        frame.to_feather(path)
    elif change == "strategy source":
        engine.write_strategy(stoploss=-0.06)
    elif change == "parameter value":  # a hyperopt result file next to the strategy
        params = engine.strategy_file.with_suffix(".json")
        params.write_text(json.dumps({"strategy_name": "ResultCacheStrategy",
                                      "params": {"buy": {"rsi_entry": 44}}}))
    elif change == "module constant":
        engine.write_strategy(threshold=0.02)
    elif change == "config value":
        overrides = {"dry_run_wallet": 1001}
    elif change == "fee":
        overrides = {"fee": 0.0011}
    try:
        changed = engine.run(**overrides)
        assert not changed.reused
        assert_same_result(engine.run(cached=False, **overrides), changed)
    finally:
        if change == "candle":
            saved.to_feather(path)
        engine.strategy_file.with_suffix(".json").unlink(missing_ok=True)
        engine.write_strategy()


@pytest.mark.parametrize("patch", ["module function", "exchange method mock"])
def test_freqtrade_code_replaced_at_run_time_is_a_miss(engine, patch):
    """The key covers Freqtrade's files, not what a process rebinds after importing them (as
    Freqtrade's own tests do with ``mocker.patch``): such a run is neither served nor stored."""
    from unittest import mock

    engine.run()  # stored
    if patch == "module function":
        target = mock.patch("freqtrade.optimize.backtesting.amount_to_contract_precision",
                            lambda amount, *args, **kwargs: round(amount, 3))
    else:
        from freqtrade.exchange import Exchange

        target = mock.patch.object(Exchange, "get_max_pair_stake_amount", return_value=20.0)
    with target:
        patched = engine.run()
        assert not patched.reused
        assert any("Freqtrade code replaced at run time" in m for m in engine.messages)
        assert_same_result(engine.run(cached=False), patched)
        if patch == "module function":
            assert (patched.result["results"]["amount"].round(3)
                    == patched.result["results"]["amount"]).all()
        else:
            assert (patched.result["results"]["stake_amount"] <= 20.0).all()
    assert engine.run().reused  # the original code is back: the stored result is served again


def test_signal_export_of_a_hit_matches_with_rejected_signals(engine):
    """``--export signals`` builds its tables from the result and ``rejected_dict`` after
    ``backtest()``: a hit gives the same signal, rejected and exit tables."""
    settings = {"export": "signals", "max_open_trades": 1}
    stock = engine.run(cached=False, **settings)
    engine.run(**settings)
    warm = engine.run(**settings)
    assert warm.reused
    assert stock.backtesting.rejected_dict, "max_open_trades=1 should reject signals"
    assert_same_result(stock, warm)
    tables = {kind: stock.backtesting.analysis_results[kind] for kind in
              ("signals", "rejected", "exited")}
    assert tables["rejected"]["ResultCacheStrategy"]
    for kind, expected in tables.items():
        got = warm.backtesting.analysis_results[kind]
        assert first_difference(got, expected, kind) is None, first_difference(got, expected)


def test_a_strategy_class_without_methods_of_its_own_is_cached(engine):
    path = engine.strategy_file.with_name("mixin_sample_strategy.py")
    name = "MixinSampleStrategy"
    try:
        path.write_text(MIXIN_STRATEGY.format(extra=""))
        stock = engine.run(cached=False, strategy=name)
        engine.run(strategy=name)
        warm = engine.run(strategy=name)
        assert warm.reused, [m for m in engine.messages if "not stored" in m]
        assert_same_result(stock, warm)
        path.write_text(MIXIN_STRATEGY.format(extra="    # an edited file is a new key"))
        assert not engine.run(strategy=name).reused
    finally:
        path.unlink()


def test_output_only_settings_do_not_change_the_key(engine, tmp_path):
    engine.run()
    assert engine.run(exportdirectory=tmp_path, backtest_notes="a note").reused


def test_output_settings_count_when_the_strategy_reads_them(engine):
    engine.write_strategy(extra='def bot_start(self, **kwargs):\n    self.notes = '
                                'self.config.get("backtest_notes")')
    try:
        engine.run(backtest_notes="one")
        assert engine.run(backtest_notes="one").reused
        assert not engine.run(backtest_notes="two").reused
    finally:
        engine.write_strategy()


@pytest.mark.parametrize("extra, reason", [
    ("def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, "
     "current_time, entry_tag, side, **kwargs):\n"
     "    from datetime import datetime\n    return datetime.now().second % 2 == 0",
     "calls 'datetime.now()'"),
    # never called in a backtest (that would need the network): the scan still refuses it
    ("def live_spread(self, pair):\n    return self.dp.ticker(pair)",
     "calls 'self.dp.ticker()'"),
    ("def optimized_share(self):\n    return self.opt_counters()",  # differs per run
     "calls 'self.opt_counters()'"),
    ("def bot_start(self, **kwargs):\n    self.handle = object()",
     "attribute self.handle: cannot hash a object by content"),
])
def test_what_cannot_be_proven_is_not_cached(engine, extra, reason):
    engine.write_strategy(extra=extra)
    try:
        engine.run()
        second = engine.run()
    finally:
        engine.write_strategy()
    assert not second.reused
    assert any("not stored" in m and reason in m for m in engine.messages), engine.messages


def test_other_run_modes_and_the_switch_are_not_cached(engine, configure_caches):
    from freqtrade.enums import RunMode

    engine.run(runmode=RunMode.HYPEROPT)
    assert not engine.run(runmode=RunMode.HYPEROPT).reused
    assert any("run mode hyperopt" in m for m in engine.messages), engine.messages
    configure_caches(backtests="false")
    engine.run()
    assert not engine.run().reused


def test_an_unusable_entry_is_a_logged_miss_with_the_original_result(engine):
    from freqtrade_opt_plugin.cache.backtest_results import CACHE_NAME
    from freqtrade_opt_plugin.cache.caches import get_cache

    stock = engine.run(cached=False)
    engine.run()
    cache = get_cache(CACHE_NAME)
    diskcache = cache._open()
    # the entry (the manifest of the recorded reads is the other key)
    (key,) = [k for k in diskcache.iterkeys() if isinstance(cache.get(k), tuple)]
    cache.set(key, ({"fields": [["results", "frame", 5]], "engine": {}},))
    rerun = engine.run()
    assert not rerun.reused
    assert any("stored result unusable" in m for m in engine.messages)
    assert_same_result(stock, rerun)
    assert engine.run().reused  # stored again by the rerun


def test_a_changed_unrestorable_engine_attribute_is_not_stored(engine, monkeypatch):
    from freqtrade.optimize.backtesting import Backtesting

    original = Backtesting.handle_left_open

    def handle_left_open(self, open_trades, data):
        self.extra_state = object()  # something a stored result could not restore
        return original(self, open_trades, data)

    from freqtrade_opt_plugin import runtime_patches

    monkeypatch.setattr(Backtesting, "handle_left_open", handle_left_open)
    # a replaced Freqtrade method is refused first (test_freqtrade_code_replaced_at_run_time_is_a
    # _miss): seen as Freqtrade's own here, to reach the check of the engine's state
    monkeypatch.setattr(runtime_patches, "replaced", lambda *args, **kwargs: [])
    engine.run()
    assert not engine.run().reused
    assert any("changed Backtesting.extra_state" in m for m in engine.messages)


def test_original_errors_propagate_once(engine, monkeypatch):
    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.cache.backtest_results import cached_backtest
    from freqtrade_opt_plugin.router import ORIGINAL_ERROR_ATTRIBUTE

    calls = []

    def failing(self, processed, start_date, end_date):
        calls.append(1)
        raise ValueError("inside the trade loop")

    backtesting = Backtesting(engine.config())
    backtesting._set_strategy(backtesting.strategylist[0])
    with pytest.raises(ValueError, match="inside the trade loop") as info:
        cached_backtest(failing, backtesting, {}, None, None)
    assert getattr(info.value, ORIGINAL_ERROR_ATTRIBUTE) is True
    assert calls == [1]


def test_the_optimization_record():
    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.optimizations.backtest_cache import OPTIMIZATION
    from freqtrade_opt_plugin.registry import OptimizationLevel, fingerprint

    assert OPTIMIZATION.target == "freqtrade.optimize.backtesting:Backtesting.backtest"
    assert OPTIMIZATION.tier is OptimizationLevel.AGGRESSIVE
    assert OPTIMIZATION.shadow is False
    assert fingerprint(Backtesting.backtest) in OPTIMIZATION.fingerprints.values()
