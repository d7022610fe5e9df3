"""Reuse is keyed on what the storing run touched (issue #12): each case is a real offline backtest
with both caches (``indicator_cache`` and ``backtest_cache``) compared with stock Freqtrade
(`offline.compare.compare_backtests`), after an input the old key did not cover has changed.

A "process" is emulated per run: a fresh ``Backtesting`` (the strategy file is loaded again) and
the user's helper modules dropped from ``sys.modules``, as a new ``freqtrade backtesting`` would
start. A test asserting a miss first asserts that the earlier run was stored (it was reused).
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest


PAIRS = ("BTC/USDT", "ETH/USDT")
REUSED = "reused the stored result of an identical backtest"
INDICATORS_REUSED = "reused cached indicators of"

HEADER = '''
import sys
from pathlib import Path

import talib.abstract as ta
from pandas import DataFrame

from freqtrade.strategy import IStrategy

sys.path.append(str(Path(__file__).parent / "helpers"))
'''

BASE = '''

class {name}(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {{"0": 0.02}}
    stoploss = -0.05
    startup_candle_count = 30

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
{indicators}
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
{entry}
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rsi"] > 70, "exit_long"] = 1
        return dataframe
{extra}
'''

ENTRY = 'dataframe.loc[dataframe["rsi"] < 45, "enter_long"] = 1'


@dataclass
class Run:
    stats: dict[str, Any]
    backtesting: Any
    reused: list[str]  # strategies whose backtest result was reused
    indicators_reused: int  # advise_all_indicators calls that reused at least one pair
    messages: list[str]


class Lab:
    """Writes strategies and helper modules into a workspace and runs offline backtests."""

    def __init__(self, workspace: Any, messages: list[str]) -> None:
        self.workspace = workspace
        self.messages = messages
        self.strategies = workspace.user_data / "strategies"
        self.helpers = self.strategies / "helpers"
        self.helpers.mkdir(exist_ok=True)
        self.helper_names: set[str] = set()

    def strategy(self, name: str, *, indicators: str = "", entry: str = ENTRY,
                 extra: str = "", imports: str = "") -> None:
        source = HEADER + imports + BASE.format(
            name=name, indicators=textwrap.indent(indicators, " " * 8),
            entry=textwrap.indent(entry, " " * 8), extra=textwrap.indent(extra, " " * 4))
        (self.strategies / f"{name.lower()}.py").write_text(source)

    def helper(self, module: str, source: str) -> None:
        self.helper_names.add(module)
        (self.helpers / f"{module}.py").write_text(textwrap.dedent(source))

    def config(self, strategies: list[str], **overrides: Any) -> dict[str, Any]:
        from freqtrade.commands.optimize_commands import setup_optimize_configuration
        from freqtrade.enums import RunMode

        args = {
            "config": [str(overrides.pop("config_path", self.workspace.config_path))],
            "user_data_dir": str(self.workspace.user_data),
            "strategy_list": strategies, "timeframe": "5m", "export": "none",
            "backtest_cache": "none",
        }
        config = setup_optimize_configuration(args, RunMode.BACKTEST)
        config.update(overrides)
        return config

    def run(self, strategies: list[str], *, cached: bool = True, **overrides: Any) -> Run:
        """One backtest of `strategies` (in order), as a fresh process would run it."""
        from freqtrade.optimize.backtesting import Backtesting
        from freqtrade.optimize.optimize_reports import generate_backtest_stats
        from freqtrade.strategy.interface import IStrategy

        from freqtrade_opt_plugin.optimizations.reuse.backtest_results import (
            cached_backtest,
            original_backtest,
        )
        from freqtrade_opt_plugin.optimizations.reuse.indicators import (
            cached_advise_all_indicators,
            original_advise_all_indicators,
        )

        for module in self.helper_names:  # a new process imports its helpers afresh
            sys.modules.pop(module, None)
        sys.path[:] = [p for p in sys.path if p != str(self.helpers)]
        backtest, advise = original_backtest(), original_advise_all_indicators()

        def cached_bt(self, processed, start_date, end_date):
            return cached_backtest(backtest, self, processed, start_date, end_date)

        def cached_advise(self, data):
            return cached_advise_all_indicators(advise, self, data)

        cached_bt.__wrapped__ = backtest  # as a Router: fingerprints see the original
        cached_advise.__wrapped__ = advise

        seen = len(self.messages)
        installed = (vars(Backtesting)["backtest"], vars(IStrategy)["advise_all_indicators"])
        Backtesting.backtest = cached_bt if cached else backtest
        IStrategy.advise_all_indicators = cached_advise if cached else advise
        try:
            backtesting = Backtesting(self.config(strategies, **overrides))
            data, timerange = backtesting.load_bt_data()
            for strategy in backtesting.strategylist:
                min_date, max_date = backtesting.backtest_one_strategy(strategy, data, timerange)
        finally:
            Backtesting.backtest, IStrategy.advise_all_indicators = installed
        stats = generate_backtest_stats(data, backtesting.all_bt_content, min_date, max_date)
        messages = self.messages[seen:]
        reused = [name for name in strategies
                  if any(REUSED in m and f"backtest of {name} " in m for m in messages)]
        return Run(stats, backtesting, reused,
                   sum(INDICATORS_REUSED in m for m in messages), messages)


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    root = tmp_path_factory.mktemp("reuse-soundness")
    return create_workspace(root / "ws", PAIRS, days=6, seed=11)


@pytest.fixture
def lab(workspace, cache_dir):
    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )

    messages: list[str] = []
    plugin_logger = logging.getLogger("freqtrade_opt_plugin")
    handler = _Collect(messages)
    level = plugin_logger.level
    plugin_logger.addHandler(handler)
    plugin_logger.setLevel(logging.DEBUG)
    install_static_markets()
    lab = Lab(workspace, messages)
    yield lab
    uninstall_static_markets()
    plugin_logger.removeHandler(handler)
    plugin_logger.setLevel(level)
    for module in lab.helper_names:
        sys.modules.pop(module, None)
    sys.path[:] = [p for p in sys.path if p != str(lab.helpers)]


def assert_same(stock: Run, run: Run) -> None:
    from freqtrade_opt_plugin.offline.compare import compare_backtests

    verdict = compare_backtests(stock.stats, run.stats)
    assert verdict.identical, verdict.first_difference.describe()


def trades(run: Run, name: str) -> int:
    return len(run.stats["strategy"][name]["trades"])


# -- case 1: a helper called as module.func() reads the environment or a settings file ----------
ENV_HELPER = '''
import os


def entry_threshold():
    return float(os.environ.get("REUSE_TEST_THRESHOLD", "45"))
'''

FILE_HELPER = '''
import json
from pathlib import Path


def entry_threshold():
    path = Path(__file__).with_name("settings.json")
    return float(json.loads(path.read_text())["threshold"])
'''


@pytest.mark.parametrize("source", ["environment", "settings file"])
def test_a_helper_function_reading_the_environment_or_a_file_is_keyed(lab, monkeypatch, source):
    lab.helper("advhelper", ENV_HELPER if source == "environment" else FILE_HELPER)
    lab.strategy("HelperRead", imports="import advhelper\n",
                 entry='dataframe.loc[dataframe["rsi"] < advhelper.entry_threshold(), '
                       '"enter_long"] = 1')

    def set_threshold(value: str) -> None:
        if source == "environment":
            monkeypatch.setenv("REUSE_TEST_THRESHOLD", value)
        else:
            (lab.helpers / "settings.json").write_text(f'{{"threshold": {value}}}')

    set_threshold("45")
    lab.run(["HelperRead"])
    warm = lab.run(["HelperRead"])
    assert warm.reused == ["HelperRead"]  # stored
    set_threshold("30")
    stock = lab.run(["HelperRead"], cached=False)
    changed = lab.run(["HelperRead"])
    assert changed.reused == []
    assert_same(stock, changed)
    assert trades(stock, "HelperRead") != trades(warm, "HelperRead")  # the old result differs


# -- case 2: a helper imported inside a method, with sys.path extended by the strategy file -----
def inner_helper(window: int) -> str:
    return f'''
    def add_indicators(dataframe):
        dataframe["ema"] = dataframe["close"].ewm(span={window}).mean()
        return dataframe
    '''


def test_a_helper_imported_inside_a_method_is_keyed_by_its_content(lab):
    lab.helper("inhelper", inner_helper(20))
    lab.strategy("InnerImport", indicators="from inhelper import add_indicators\n"
                                           "dataframe = add_indicators(dataframe)",
                 entry='dataframe.loc[dataframe["close"] < dataframe["ema"] * 0.995, '
                       '"enter_long"] = 1')
    lab.run(["InnerImport"])
    warm = lab.run(["InnerImport"])
    assert warm.reused == ["InnerImport"] and warm.indicators_reused == 1, \
        [m for m in lab.messages if "not" in m]  # both stored
    lab.helper("inhelper", inner_helper(150))  # a longer file: no stale bytecode
    stock = lab.run(["InnerImport"], cached=False)
    changed = lab.run(["InnerImport"])
    assert changed.reused == [] and changed.indicators_reused == 0
    assert_same(stock, changed)
    assert trades(stock, "InnerImport") != trades(warm, "InnerImport")


# -- case 3: a strategy list where A's callback changes state B reads --------------------------
SHARED = '''
STATE = {"entries": 0}
'''


def test_a_strategy_list_hit_never_changes_what_the_next_strategy_sees(lab):
    lab.helper("shared_state", SHARED)
    lab.strategy("Writer", imports="import shared_state\n", extra='''
def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                        entry_tag, side, **kwargs):
    shared_state.STATE["entries"] += 1
    return True
''')
    lab.strategy("Reader", imports="import shared_state\n", extra='''
def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                        entry_tag, side, **kwargs):
    return shared_state.STATE["entries"] % 3 != 0
''')
    names = ["Writer", "Reader"]
    stock = lab.run(names, cached=False)
    first = lab.run(names)
    second = lab.run(names)
    assert_same(stock, first)
    assert_same(stock, second)
    assert second.reused == ["Reader"]  # stored; Writer changes module state: it always runs
    assert any("not stored" in m and "shared_state.STATE" in m for m in first.messages), \
        first.messages


# -- case 4: a module-level object filled in populate_indicators, read by a callback -----------
def test_a_module_object_filled_by_populate_indicators_is_not_left_empty(lab):
    lab.strategy("Facts", indicators='FACTS.allowed[metadata["pair"]] = bool(len(dataframe))',
                 imports="\n\nclass _Facts:\n    def __init__(self):\n        self.allowed = {}"
                         "\n\n\nFACTS = _Facts()\n",
                 extra='''
def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                        entry_tag, side, **kwargs):
    return FACTS.allowed.get(pair, False)
''')
    stock = lab.run(["Facts"], cached=False)
    assert trades(stock, "Facts") > 0
    lab.run(["Facts"])
    second = lab.run(["Facts"])
    assert_same(stock, second)
    assert second.indicators_reused == 0
    assert any("not cached" in m and "FACTS" in m for m in lab.messages), lab.messages[-5:]


# -- case 6: pd.Timestamp("now") in a callback --------------------------------------------------
@pytest.mark.parametrize("expression", ['pd.Timestamp("now")', 'np.datetime64("now")',
                                        "pd.Timestamp.utcnow()"])
def test_the_current_time_in_a_callback_is_never_reused(lab, expression):
    lab.strategy("Clock", imports="import numpy as np\nimport pandas as pd\n", extra=f'''
def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                        entry_tag, side, **kwargs):
    return {expression} is not None
''')
    from freqtrade_opt_plugin.cache.caches import get_cache

    lab.run(["Clock"])
    second = lab.run(["Clock"])
    assert second.reused == []
    refusals = [reason for reason, _ in get_cache("backtesting").refusals()]
    assert any("now" in reason for reason in refusals), refusals


def refusals() -> list[tuple[str, int]]:
    """Why backtests were not stored so far (the message of a failed "should hit")."""
    from freqtrade_opt_plugin.cache.caches import get_cache

    return get_cache("backtesting").refusals()


# -- case 7: a hit leaves the DataProvider, wallets and progress as the trade loop does ---------
def test_a_hit_leaves_what_later_code_reads_as_stock(lab):
    lab.strategy("Plain")
    stock = lab.run(["Plain"], cached=False)
    lab.run(["Plain"])
    warm = lab.run(["Plain"])
    assert warm.reused == ["Plain"], refusals()
    assert_same(stock, warm)
    for pair in PAIRS:
        expected, _ = stock.backtesting.dataprovider.get_analyzed_dataframe(pair, "5m")
        got, _ = warm.backtesting.dataprovider.get_analyzed_dataframe(pair, "5m")
        assert len(expected) > 0
        assert got.equals(expected) and list(got.columns) == list(expected.columns)
    assert warm.backtesting.wallets.get_all_balances() == \
        stock.backtesting.wallets.get_all_balances()

    def bars(backtesting):
        return [(t.description, t.completed, t.total) for t in backtesting.progress.tasks]

    assert bars(warm.backtesting) == bars(stock.backtesting)


# -- smaller items --------------------------------------------------------------------------------
def test_a_copy_of_the_config_at_another_path_hits(lab, tmp_path):
    lab.strategy("Plain")
    lab.run(["Plain"])
    copy = tmp_path / "elsewhere" / "config-copy.json"
    copy.parent.mkdir()
    copy.write_text(lab.workspace.config_path.read_text())
    assert lab.run(["Plain"], config_path=copy).reused == ["Plain"], refusals()


def test_a_world_writable_state_dir_is_refused_for_caches(cache_dir):
    from freqtrade_opt_plugin.cache import caches

    state = cache_dir.parent
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o777)
    try:
        cache = caches.get_cache("backtesting")
        assert cache.set("key", {"value": 1}) is False
        assert cache.bypassed is not None and "writable by group or others" in cache.bypassed
    finally:
        os.chmod(state, 0o700)


def test_refusals_are_listed_by_cache_status(lab):
    lab.strategy("Clock", imports="import pandas as pd\n", extra='''
def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                        entry_tag, side, **kwargs):
    return pd.Timestamp("now") is not None
''')
    lab.run(["Clock"])
    from freqtrade_opt_plugin.cache.caches import get_cache_status

    refusals = get_cache_status()["caches"]["backtesting"]["refusals"]
    assert any("'now'" in r["reason"] for r in refusals), refusals


def test_the_indicator_cache_is_not_shadow_checked():
    """At level experimental a shadow check would compare the strategy argument by identity with
    a copy; indicator reuse declares itself unfit for shadow checks (it records its own run)."""
    from freqtrade_opt_plugin.optimizations.indicator_cache import OPTIMIZATION

    assert OPTIMIZATION.shadow is False
