"""Indicator reuse: identical results, and every input change invalidates the entry.

Strategies are real files loaded by Freqtrade's StrategyResolver, with a real DataProvider in
backtest mode reading feather files (markets come from a stub exchange: no network). Each "run"
is a freshly loaded strategy and DataProvider, like a new ``freqtrade backtesting`` process.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from freqtrade_opt_plugin.cache.hashing import content_hash


DATA = Path(__file__).resolve().parents[1] / "data"
PAIRS = ("ETH/BTC", "LTC/BTC")
MARKETS = ("ETH/BTC", "LTC/BTC", "XRP/ETH")

STRATEGY = '''
from datetime import datetime

import talib.abstract as ta
from pandas import DataFrame

from freqtrade.strategy import IStrategy, IntParameter, informative, merge_informative_pair

FACTOR = {factor}


class CacheTestStrategy(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {{"0": 0.1}}
    stoploss = -0.1
    startup_candle_count = 20
    ema_period = IntParameter(5, 50, default=10, space="buy")
    entry_rsi = IntParameter(10, 40, default=30, space="buy")

    @informative("1h")
    def populate_indicators_1h(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        return dataframe

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["ema"] = ta.EMA(dataframe, timeperiod=self.ema_period.value)
        dataframe["scaled"] = dataframe["close"] * FACTOR
        if self.config.get("use_volume_filter", False):
            dataframe["vol_ma"] = dataframe["volume"].rolling(5).mean()
        informative_df = self.dp.get_pair_dataframe("XRP/ETH", "5m")
        dataframe = merge_informative_pair(dataframe, informative_df, self.timeframe, "5m",
                                           ffill=True)
{extra}
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["rsi_1h"] < self.entry_rsi.value, "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe
'''


class Workspace:
    """A strategy directory and a datadir (5m and resampled 1h candles) in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.strategies = root / "strategies"
        self.datadir = root / "data"
        self.strategies.mkdir(parents=True)
        self.datadir.mkdir()
        for name in ("ETH_BTC", "LTC_BTC", "XRP_ETH"):
            shutil.copy(DATA / f"{name}-5m.feather", self.datadir)
            frame = pd.read_feather(DATA / f"{name}-5m.feather")
            hourly = (frame.set_index("date").resample("1h")
                      .agg({"open": "first", "high": "max", "low": "min", "close": "last",
                            "volume": "sum"}).dropna().reset_index())
            hourly.to_feather(self.datadir / f"{name}-1h.feather")
        self.write_strategy()

    def write_strategy(self, factor: float = 2.0, extra: str = "") -> None:
        body = STRATEGY.format(factor=factor, extra=textwrap.indent(extra, " " * 8))
        (self.strategies / "cache_test_strategy.py").write_text(body)

    def change_candle(self, name: str, row: int, column: str = "close") -> None:
        path = self.datadir / f"{name}.feather"
        frame = pd.read_feather(path)
        frame.loc[row, column] = frame.loc[row, column] * 1.0001
        frame.to_feather(path)

    def config(self, **extra) -> dict:
        from freqtrade.enums import CandleType, RunMode

        return {
            "strategy": "CacheTestStrategy", "strategy_path": str(self.strategies),
            "user_data_dir": self.root, "stake_currency": "BTC", "stake_amount": 0.01,
            "dry_run": True, "runmode": RunMode.BACKTEST, "datadir": self.datadir,
            "dataformat_ohlcv": "feather", "candle_type_def": CandleType.SPOT,
            "trading_mode": "spot", "margin_mode": "", "max_open_trades": 3,
            "exchange": {"name": "binance", "pair_whitelist": list(PAIRS)},
            **extra,
        }

    def strategy(self, **config):
        """A freshly loaded strategy with its own DataProvider (as in a new process)."""
        from freqtrade.data.dataprovider import DataProvider
        from freqtrade.resolvers import StrategyResolver

        conf = self.config(**config)
        strategy = StrategyResolver.load_strategy(conf)
        markets = {p: {"symbol": p, "base": p.split("/")[0], "quote": p.split("/")[1]}
                   for p in MARKETS}
        strategy.dp = DataProvider(conf, SimpleNamespace(markets=markets))
        strategy.ft_bot_start()
        return strategy

    def data(self) -> dict[str, pd.DataFrame]:
        from freqtrade.data.history import load_pair_history

        return {p: load_pair_history(pair=p, timeframe="5m", datadir=self.datadir,
                                     data_format="feather") for p in PAIRS}


@pytest.fixture
def ws(tmp_path, cache_dir) -> Workspace:
    return Workspace(tmp_path / "ws")


def run(strategy, data):
    """(result, pairs the original computed) through the cached path."""
    from freqtrade_opt_plugin.cache.indicators import (
        cached_advise_all_indicators,
        original_advise_all_indicators,
    )

    original = original_advise_all_indicators()
    computed: list[str] = []

    def counting(strat, subset):
        computed.extend(subset)
        return original(strat, subset)

    return cached_advise_all_indicators(counting, strategy, data), computed


def reference(ws: Workspace, **config) -> dict[str, str]:
    from freqtrade_opt_plugin.cache.indicators import original_advise_all_indicators

    result = original_advise_all_indicators()(ws.strategy(**config), ws.data())
    return {pair: content_hash(frame) for pair, frame in result.items()}


def hashes(result) -> dict[str, str]:
    return {pair: content_hash(frame) for pair, frame in result.items()}


def test_second_run_reuses_every_pair_with_identical_frames(ws):
    expected = reference(ws)
    first, computed = run(ws.strategy(), ws.data())
    assert computed == list(PAIRS)
    assert hashes(first) == expected
    second, computed = run(ws.strategy(), ws.data())
    assert computed == []
    assert hashes(second) == expected
    assert list(second) == list(PAIRS)


def test_strategy_source_change_invalidates(ws):
    run(ws.strategy(), ws.data())
    ws.write_strategy(factor=3.0)
    result, computed = run(ws.strategy(), ws.data())
    assert computed == list(PAIRS)
    assert hashes(result) == reference(ws)


def test_parameter_value_change_invalidates_only_when_indicators_read_it(ws):
    run(ws.strategy(), ws.data())
    strategy = ws.strategy()
    strategy.entry_rsi.value = 25  # read by populate_entry_trend only
    result, computed = run(strategy, ws.data())
    assert computed == []
    assert hashes(result) == reference(ws)
    strategy = ws.strategy()
    strategy.ema_period.value = 21  # read by populate_indicators
    result, computed = run(strategy, ws.data())
    assert computed == list(PAIRS)
    check = ws.strategy()
    check.ema_period.value = 21
    from freqtrade_opt_plugin.cache.indicators import original_advise_all_indicators

    assert hashes(result) == hashes(original_advise_all_indicators()(check, ws.data()))
    strategy = ws.strategy()
    strategy.ema_period.in_space = True  # hyperopt: .range changes -> another key
    assert run(strategy, ws.data())[1] == list(PAIRS)


def test_one_candle_changes_only_that_pair(ws):
    run(ws.strategy(), ws.data())
    ws.change_candle("ETH_BTC-5m", row=1234)
    result, computed = run(ws.strategy(), ws.data())
    assert computed == ["ETH/BTC"]
    assert hashes(result) == reference(ws)


@pytest.mark.parametrize("changed, recomputed", [
    ("XRP_ETH-5m", ["ETH/BTC", "LTC/BTC"]),  # informative pair read through self.dp
    ("LTC_BTC-1h", ["LTC/BTC"]),  # @informative('1h') data of one pair
])
def test_informative_data_change_invalidates(ws, changed, recomputed):
    run(ws.strategy(), ws.data())
    ws.change_candle(changed, row=100)
    result, computed = run(ws.strategy(), ws.data())
    assert computed == recomputed
    assert hashes(result) == reference(ws)


def test_config_values_read_are_keys_and_others_are_not(ws):
    run(ws.strategy(), ws.data())
    result, computed = run(ws.strategy(bot_name="something else"), ws.data())
    assert computed == []  # never read by the indicators
    result, computed = run(ws.strategy(use_volume_filter=True), ws.data())
    assert computed == list(PAIRS)
    assert "vol_ma" in result["ETH/BTC"].columns
    assert hashes(result) == reference(ws, use_volume_filter=True)
    assert run(ws.strategy(use_volume_filter=True), ws.data())[1] == []


def test_stop_and_roi_changes_reuse(ws):
    run(ws.strategy(), ws.data())
    strategy = ws.strategy(stoploss=-0.05, minimal_roi={"0": 0.02})
    result, computed = run(strategy, ws.data())
    assert computed == []
    assert hashes(result) == reference(ws)


@pytest.mark.parametrize("extra, reason", [
    ("self.seen_pairs = getattr(self, 'seen_pairs', 0) + 1",
     "changed the strategy's state"),
    ("dataframe['now'] = datetime.now().year", "calls 'datetime.now()'"),
    ("dataframe['cash'] = self.wallets.get_starting_balance()", "uses self.wallets"),
    ("self.config['touched'] = True", "writes to the config"),
    ("dataframe['ob'] = len(str(self.dp.orderbook('ETH/BTC', 1)))", "uses dp.orderbook"),
])
def test_what_cannot_be_proven_is_not_cached(ws, caplog, extra, reason):
    ws.write_strategy(extra=extra)
    caplog.set_level(logging.DEBUG, logger="freqtrade_opt_plugin")

    def strategy():
        strat = ws.strategy()
        strat.wallets = SimpleNamespace(get_starting_balance=lambda: 1.0)
        strat.dp.orderbook = lambda pair, maximum: {"bids": []}
        return strat

    first, computed_1 = run(strategy(), ws.data())
    second, computed_2 = run(strategy(), ws.data())
    assert computed_1 == computed_2 == list(PAIRS)
    assert hashes(first) == hashes(second)
    assert reason in caplog.text


def test_freqai_and_public_trades_are_not_cached(ws, caplog):
    from freqtrade_opt_plugin.cache.indicators import strategy_cacheability

    caplog.set_level(logging.DEBUG, logger="freqtrade_opt_plugin")
    strategy = ws.strategy()
    strategy.config = {**strategy.config, "freqai": {"enabled": True}}  # dp keeps its own
    assert run(strategy, ws.data())[1] == list(PAIRS)
    assert run(strategy, ws.data())[1] == list(PAIRS)
    assert "FreqAI is enabled" in caplog.text
    strategy = ws.strategy()
    strategy.config = {**strategy.config,
                       "exchange": {"name": "binance", "use_public_trades": True}}
    assert "use_public_trades" in strategy_cacheability(strategy)
    assert strategy_cacheability(ws.strategy()) is None


def test_switches_turn_it_off(ws, configure_caches):
    configure_caches(indicators="false")
    run(ws.strategy(), ws.data())
    assert run(ws.strategy(), ws.data())[1] == list(PAIRS)
    configure_caches(indicators="true", enabled="false")
    run(ws.strategy(), ws.data())
    assert run(ws.strategy(), ws.data())[1] == list(PAIRS)


def test_bypassed_cache_gives_identical_results(ws, configure_caches, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    configure_caches(dir=blocker / "x")
    result, computed = run(ws.strategy(), ws.data())
    assert computed == list(PAIRS)
    assert hashes(result) == reference(ws)


def test_the_optimization_record():
    from freqtrade.strategy.interface import IStrategy

    from freqtrade_opt_plugin.optimizations.indicator_cache import OPTIMIZATION
    from freqtrade_opt_plugin.registry import OptimizationLevel, fingerprint

    original = inspect.unwrap(IStrategy.advise_all_indicators)
    assert OPTIMIZATION.target == "freqtrade.strategy.interface:IStrategy.advise_all_indicators"
    assert OPTIMIZATION.fingerprints == {"2026.9": fingerprint(original)}
    assert OPTIMIZATION.tier is OptimizationLevel.AGGRESSIVE
    assert OPTIMIZATION.performance_threshold == 1.0
    assert (inspect.signature(OPTIMIZATION.build(original)).parameters.keys()
            == inspect.signature(original).parameters.keys())


def test_the_replacement_equals_the_original(ws):
    from freqtrade.strategy.interface import IStrategy

    from freqtrade_opt_plugin.optimizations.indicator_cache import OPTIMIZATION

    replacement = OPTIMIZATION.build(inspect.unwrap(IStrategy.advise_all_indicators))
    expected = reference(ws)
    for _ in range(2):  # cold, then warm
        assert hashes(replacement(ws.strategy(), ws.data())) == expected


def test_a_failure_of_the_machinery_raises_for_the_router_to_fall_back(ws, monkeypatch):
    """Router contract: the replacement does not catch its own failures (the Router restores the
    arguments and runs the original); they are not marked as the original's errors."""
    from freqtrade_opt_plugin.optimizations.reuse import indicators
    from freqtrade_opt_plugin.router import ORIGINAL_ERROR_ATTRIBUTE

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(indicators, "_state_digest", broken)
    strategy = ws.strategy()
    config, dp = strategy.config, strategy.dp
    with pytest.raises(RuntimeError, match="boom") as info:
        run(strategy, ws.data())
    assert not getattr(info.value, ORIGINAL_ERROR_ATTRIBUTE, False)
    assert strategy.config is config and strategy.dp is dp


def test_strategy_errors_propagate_unchanged_and_nothing_stays_swapped(ws):
    from freqtrade_opt_plugin.router import ORIGINAL_ERROR_ATTRIBUTE

    ws.write_strategy(extra="raise ValueError('strategy bug')")
    strategy = ws.strategy()
    config, dp = strategy.config, strategy.dp
    with pytest.raises(ValueError, match="strategy bug") as info:
        run(strategy, ws.data())
    assert strategy.config is config and strategy.dp is dp
    # Marked as the original's own error: the Router re-raises it once, counting no failure.
    assert getattr(info.value, ORIGINAL_ERROR_ATTRIBUTE) is True
