"""`runtime_patches`: Freqtrade bindings replaced after import (mock.patch, monkeypatch) are
named; this plugin's Routers and its own functions are not."""

from __future__ import annotations

from unittest import mock

import freqtrade.optimize.backtesting as backtesting_module
from freqtrade.exchange import Exchange
from freqtrade.optimize.backtesting import Backtesting

from freqtrade_opt_plugin import runtime_patches


def test_nothing_is_replaced_in_a_plain_process():
    runtime_patches.remember([backtesting_module])
    assert runtime_patches.replaced() == []


def test_a_patched_module_function_and_a_mocked_class_method_are_named():
    runtime_patches.remember([backtesting_module, __import__("freqtrade.exchange.exchange",
                                                            fromlist=["x"])])
    name = "freqtrade.optimize.backtesting.amount_to_contract_precision"
    with mock.patch(name, lambda amount, *args, **kwargs: amount):
        assert name in runtime_patches.replaced()
    with mock.patch.object(Exchange, "get_fee", return_value=0.5):
        assert "Exchange.get_fee" in runtime_patches.replaced()
    with mock.patch.object(Backtesting, "backtest_loop", autospec=True):
        assert "Backtesting.backtest_loop" in runtime_patches.replaced()
        assert runtime_patches.replaced(ignore={"Backtesting.backtest_loop"}) == []
    assert runtime_patches.replaced() == []


def test_the_plugins_own_wrappers_and_mocks_on_instances():
    runtime_patches.remember([backtesting_module])
    original = backtesting_module.amount_to_contract_precision

    def router(*args, **kwargs):  # what a Router looks like: the original as __wrapped__
        return original(*args, **kwargs)

    router.__wrapped__ = original
    with mock.patch.object(backtesting_module, "amount_to_contract_precision", router):
        assert runtime_patches.replaced() == []

    class Engine:
        pass

    engine = Engine()
    engine.exchange_call = mock.MagicMock()
    assert runtime_patches.replaced([engine]) == ["Engine().exchange_call"]
