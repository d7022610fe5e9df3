"""In-process differential harness for the fast trade loop.

A `Bench` holds one real ``Backtesting`` (real exchange on the offline static markets, real
strategy file, real generated data files) and runs ``backtest`` on deep copies of the same
analysed data through Freqtrade's original and through the fast loop, returning everything a
later reader can see: the result dict and the engine's side effects.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings


# Registered here, not in a test module: ``--hypothesis-profile fast-loop-deep`` is resolved
# when pytest starts, after this directory's conftest and before test modules are imported.
settings.register_profile(
    "fast-loop-deep", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


PAIRS = ("BTC/USDT", "ETH/USDT", "XRP/USDT")

STRATEGY = '''
from datetime import datetime

import numpy as np
from pandas import DataFrame

from freqtrade.strategy import IStrategy


class FastLoopPlain(IStrategy):
    """Seeded random signals; density and seed from the config section ``fast_loop_test``."""

    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {"0": 0.02}
    stoploss = -0.05
    startup_candle_count = 10
    can_short = False

    def _knobs(self) -> dict:
        return self.config.get("fast_loop_test", {})

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def _signal(self, dataframe: DataFrame, metadata: dict, salt: int, key: str) -> np.ndarray:
        knobs = self._knobs()
        density = float(knobs.get(key, 0.05))
        rng = np.random.default_rng([int(knobs.get("seed", 1)), salt,
                                     sum(map(ord, metadata["pair"]))])
        return rng.random(len(dataframe)) < density

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        entries = self._signal(dataframe, metadata, 1, "entry")
        dataframe.loc[entries, ["enter_long", "enter_tag"]] = (1, "rnd")
        if self.can_short:
            dataframe.loc[self._signal(dataframe, metadata, 3, "short"),
                          ["enter_short", "enter_tag"]] = (1, "rnd_s")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[self._signal(dataframe, metadata, 2, "exit"), "exit_long"] = 1
        if self.can_short:
            dataframe.loc[self._signal(dataframe, metadata, 4, "exit"), "exit_short"] = 1
        return dataframe


class FastLoopCallbacks(FastLoopPlain):
    """User callbacks that read the DataProvider and other trades and record what they saw."""

    seen: list = []
    progress = None  # set by the test bench: the progress bar's counts, as user code sees them

    def _view(self, pair):
        frame, _ = self.dp.get_analyzed_dataframe(pair, self.timeframe)
        last = None if frame.empty else str(frame.iloc[-1]["date"])
        return (len(frame), last, self.progress and self.progress())

    def bot_loop_start(self, current_time: datetime, **kwargs) -> None:
        # the DataProvider's slice state as user code sees it (cheap: no frame slicing)
        state = tuple(self.dp._DataProvider__slice_index.items())
        self.seen.append(("loop", str(current_time), state, self.dp._DataProvider__slice_date,
                          self.progress and self.progress()))

    def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                            entry_tag, side, **kwargs) -> bool:
        others = tuple(sorted((t.pair, t.max_rate, t.min_rate)
                              for t in self.wallets and __import__(
                                  "freqtrade.persistence", fromlist=["Trade"]).Trade
                              .get_trades_proxy(is_open=True)))
        state = tuple(self.dp._DataProvider__slice_index.items())
        self.seen.append(("entry", pair, str(current_time), self._view(pair), state, others))
        return int(current_time.timestamp()) % 7 != 0

    def custom_exit(self, pair, trade, current_time, current_rate, current_profit, **kwargs):
        view = self._view(pair)
        self.seen.append(("exit", pair, str(current_time), view, trade.max_rate))
        if current_profit < -0.01 and int(current_time.timestamp()) % 5 == 0:
            return "custom"
        return None


class FastLoopShifty(FastLoopPlain):
    """Exit settings changed mid-run by user code: ROI and stoploss by bot_loop_start, the
    trailing stop by an entry callback (the exit scanner's proofs must follow them)."""

    trailing_stop = False

    def bot_loop_start(self, current_time: datetime, **kwargs) -> None:
        phase = (current_time.hour // 3) % 3
        self.minimal_roi = [{0: 0.2}, {0: 0.004}, {0: 0.05, 60: 0.01}][phase]
        self.stoploss = [-0.2, -0.01, -0.03][phase]

    def confirm_trade_entry(self, pair, order_type, amount, rate, time_in_force, current_time,
                            entry_tag, side, **kwargs) -> bool:
        self.trailing_stop = not self.trailing_stop
        self.trailing_stop_positive = 0.002 if self.trailing_stop else None
        return True


class FastLoopAdjust(FastLoopPlain):
    """Position adjustment (DCA and partial exits), a custom stoploss and order callbacks."""

    position_adjustment_enable = True
    max_entry_position_adjustment = 2
    use_custom_stoploss = True
    seen: list = []
    progress = None  # no bot_loop_start here: the bar's counts as callbacks see them

    def adjust_trade_position(self, trade, current_time, current_rate, current_profit,
                              min_stake, max_stake, current_entry_rate, current_exit_rate,
                              current_entry_profit, current_exit_profit, **kwargs):
        self.seen.append(("adjust", trade.pair, str(current_time), trade.nr_of_successful_entries,
                          self.progress and self.progress()))
        if current_profit < -0.01 and trade.nr_of_successful_entries < 3:
            return min(max_stake, trade.stake_amount / 2), "dca"
        if current_profit > 0.008 and trade.nr_of_successful_exits == 0:
            return -(trade.stake_amount / 3), "take_some"
        return None

    def custom_stoploss(self, pair, trade, current_time, current_rate, current_profit,
                        after_fill, **kwargs):
        return -0.03 if current_profit < 0.004 else -0.01

    def order_filled(self, pair, trade, order, current_time, **kwargs):
        self.seen.append(("filled", pair, str(current_time), order.ft_order_side))
'''


def stock_backtest() -> Any:
    """Freqtrade's own ``Backtesting.backtest`` (below any Router installed on it)."""
    from freqtrade.optimize.backtesting import Backtesting

    return inspect.unwrap(Backtesting.backtest)

@dataclass
class Observed:
    """What one ``backtest`` call returned and left behind."""

    result: dict[str, Any]
    engine: dict[str, Any]


def _engine_state(bt: Any) -> dict[str, Any]:
    from freqtrade.persistence import LocalTrade

    dp = bt.dataprovider
    return {
        "slice_index": list(dp._DataProvider__slice_index.items()),
        "slice_date": dp._DataProvider__slice_date,
        "open_pp": [(k, [t.id for t in v]) for k, v in LocalTrade.bt_trades_open_pp.items()],
        "open": [t.to_json() for t in LocalTrade.bt_trades_open],
        "trades": [t.to_json() for t in LocalTrade.bt_trades],
        "max_min": [(t.max_rate, t.min_rate, t.stop_loss) for t in LocalTrade.bt_trades],
        "rejected_dict": copy.deepcopy(bt.rejected_dict),
        "wallet_captures": list(bt.wallet_captures),
        "counters": {n: getattr(bt, n) for n in (
            "rejected_trades", "timedout_entry_orders", "timedout_exit_orders",
            "canceled_trade_entries", "canceled_entry_orders", "replaced_entry_orders",
            "canceled_exit_orders", "replaced_exit_orders", "trade_id_counter",
            "order_id_counter")},
        "wallets": bt.wallets._wallets,
        "seen": list(getattr(type(bt.strategy), "seen", [])),
        "progress": _progress(bt),
    }


def _progress(bt: Any) -> tuple | None:
    """The progress bar's tasks: description, total and count."""
    if bt.progress is None:
        return None
    return tuple((str(t.description), t.total, t.completed) for t in bt.progress.tasks)


class Bench:
    """One Backtesting object and its analysed data, run through both loops on copies."""

    def __init__(self, workspace: Any, strategy: str = "FastLoopPlain", **overrides: Any):
        from freqtrade.commands.optimize_commands import setup_optimize_configuration
        from freqtrade.data import history
        from freqtrade.data.converter import trim_dataframes
        from freqtrade.enums import RunMode
        from freqtrade.optimize.backtesting import Backtesting

        args = {
            "config": [str(workspace.config_path)],
            "user_data_dir": str(workspace.user_data),
            "strategy": strategy, "timeframe": "5m", "export": "none",
            "backtest_cache": "none",
        }
        config = setup_optimize_configuration(args, RunMode.BACKTEST)
        config.update(overrides)
        self.bt = Backtesting(config)
        self.bt._set_strategy(self.bt.strategylist[0])
        self.bt.set_fee()  # as start() does
        data, timerange = self.bt.load_bt_data()
        self.preprocessed = self.bt.strategy.advise_all_indicators(data)
        trimmed = trim_dataframes(self.preprocessed, timerange, self.bt.required_startup)
        self.min_date, self.max_date = history.get_timerange(trimmed)
        # ids continue across backtest() calls: every run starts from the same ones
        self.id_counters = (self.bt.trade_id_counter, self.bt.order_id_counter)
        if hasattr(type(self.bt.strategy), "progress"):
            type(self.bt.strategy).progress = staticmethod(lambda: _progress(self.bt))

    def run(self, backtest: Any) -> Observed:
        bt = self.bt
        bt.dataprovider._set_dataframe_max_date(None)
        seen = getattr(type(bt.strategy), "seen", None)
        if seen is not None:
            seen.clear()
        bt.rejected_dict = {}
        bt.trade_id_counter, bt.order_id_counter = self.id_counters
        result = backtest(bt, copy.deepcopy(self.preprocessed), self.min_date, self.max_date)
        return Observed(result, _engine_state(bt))

    def compare(self, fast: Any) -> tuple[Observed, Observed]:
        """Run the original and `fast`; assert every observable is identical."""
        stock = self.run(stock_backtest())
        mine = self.run(fast)
        assert_same(stock, mine)
        return stock, mine

    def compare_own_loop(self, fast: Any) -> tuple[Observed, Observed]:
        """`compare`, asserting that the driver ran its own loop (no fallback to Freqtrade's
        generator loop, `driver.stock_loop`)."""
        from unittest import mock

        from freqtrade_opt_plugin.optimizations.fast_loop import driver

        refuse = AssertionError("the driver fell back to Freqtrade's generator loop")
        with mock.patch.object(driver, "stock_loop", side_effect=refuse):
            return self.compare(fast)


def assert_same(stock: Observed, mine: Observed) -> None:
    from freqtrade_opt_plugin.equality import first_difference

    a, b = stock.result, mine.result
    assert list(a) == list(b)
    assert b["config"] is a["config"]
    assert [lock.to_json() for lock in a["locks"]] == [lock.to_json() for lock in b["locks"]]
    plain_a = {k: v for k, v in a.items() if k not in ("config", "locks")}
    plain_b = {k: v for k, v in b.items() if k not in ("config", "locks")}
    assert first_difference(plain_a, plain_b) is None, first_difference(plain_a, plain_b)
    for key in stock.engine:
        diff = first_difference(stock.engine[key], mine.engine[key], key)
        assert diff is None, diff


def _cut(path: Path, head: int = 0, tail: int = 0, holes: tuple[tuple[int, int], ...] = ()
         ) -> None:
    frame = pd.read_feather(path)
    keep = np.ones(len(frame), dtype=bool)
    keep[:head] = False
    if tail:
        keep[len(frame) - tail:] = False
    for start, stop in holes:
        keep[start:stop] = False
    frame[keep].reset_index(drop=True).to_feather(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """3 pairs x 6 days with gaps and zero volume; one pair starts late, one ends early and
    one has a long hole."""
    from freqtrade_opt_plugin.offline.markets import (
        install_static_markets,
        uninstall_static_markets,
    )
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    ws = create_workspace(tmp_path_factory.mktemp("fast-loop") / "ws", PAIRS, days=6, seed=11)
    (ws.user_data / "strategies" / "fast_loop_strategy.py").write_text(STRATEGY)
    _cut(ws.data[1].path, head=150)
    _cut(ws.data[2].path, tail=90, holes=((400, 460), (900, 903)))
    config = json.loads(ws.config_path.read_text())
    config["exchange"]["pair_whitelist"] = list(PAIRS)
    ws.config_path.write_text(json.dumps(config))
    install_static_markets()
    yield ws
    uninstall_static_markets()


class Conversion:
    """``Backtesting._get_ohlcv_as_lists`` as the ``ohlcv_lists`` optimization (`columns` True:
    the path at level standard, where the fast loop gets `column_rows.ColumnRows`) or as
    Freqtrade's own (plain row lists). Installed like a Router: ``__wrapped__`` is the original,
    so the fast loop's guard sees Freqtrade's function."""

    def __init__(self) -> None:
        self.columns = True
        self.returned: set[str] = set()  # type names of the per-pair rows handed out

    @contextmanager
    def installed(self) -> Iterator[Conversion]:
        import functools

        from freqtrade.optimize.backtesting import Backtesting

        from freqtrade_opt_plugin.optimizations import ohlcv_lists

        below = Backtesting.__dict__["_get_ohlcv_as_lists"]

        @functools.wraps(below)
        def convert(bt: Any, processed: dict) -> dict:
            data = (ohlcv_lists._get_ohlcv_as_lists if self.columns else below)(bt, processed)
            self.returned.update(type(rows).__name__ for rows in data.values())
            return data

        Backtesting._get_ohlcv_as_lists = convert
        try:
            yield self
        finally:
            Backtesting._get_ohlcv_as_lists = below

    @contextmanager
    def lists(self) -> Iterator[None]:
        self.columns = False
        try:
            yield
        finally:
            self.columns = True


@pytest.fixture(scope="module")
def conversion() -> Iterator[Conversion]:
    with Conversion().installed() as installed:
        yield installed
